// The table of verbs. Add a verb: a cmd_<verb>.cpp file and one row here.
#include <fmt/ranges.h>

#include <algorithm>
#include <cstring>
#include <ostream>

#include "cli/cli.h"
#include "qiusuo/nn/positional.h"

namespace qs::cli {

int cmd_heads(Args a);  // cmd_heads.cpp

const std::vector<Command>& commands() {
  const std::vector<std::string>& encodings = nn::position_encoding_names();
  static const std::vector<Command> c = {
      {"attention", "draw a model's attention: heatmaps, rollout, and views across checkpoints or generation",
       "usage: qiusuo attention CKPT --text TEXT --out DIR [--layer L] [--head H] [--log] [--log-floor 1e-4]\n"
       "                        [--max-tokens N] [--format png,svg] [--max-px 2048]\n"
       "       qiusuo attention MT_CKPT --source TEXT [--target TEXT] --out DIR ...   (translation checkpoints:\n"
       "                 encoder, decoder and cross-attention; without --target the model's greedy translation)\n"
       "       qiusuo attention --checkpoints CK1 CK2 ... --text TEXT --out DIR [--max-tokens N] [--view-max 256]\n"
       "       qiusuo attention CKPT --generate N --prompt TEXT --out DIR [--temperature 0] [--top-k 0] [--top-p 1]\n"
       "                        [--seed 0] [--view-max 256]\n\n"
       "Heatmaps (rows: queries, columns: keys) of every head of every layer (or --layer/--head), each layer's\n"
       "grid of heads and head average, and attention rollout: layer<L>_head<H>.{png,svg}, layer<L>_grid.png,\n"
       "layer<L>_mean.{png,svg}, rollout.{png,svg}, index.html (shows them all) and attention.json.\n"
       "--log: log10 colour scale from --log-floor. --max-px caps the matrix side (longer inputs are max-pooled).\n"
       "--checkpoints: DIR/checkpoints.html, a slider over the checkpoints (same text) with map and head selectors.\n"
       "--generate N: DIR/generation.html, one frame per generated token (greedy unless --temperature > 0),\n"
       "with a slider and a play button. Both pages are self-contained (no network). See docs/attention-views.md.\n",
       cmd_attention},
      {"bench", "run benchmark workloads (JSON lines, same names as the PyTorch peers)",
       "usage: qiusuo bench <workload|all>... [--json] [--bf16] [--threads N] [--iters N] [--profile] | --list\n"
       "  --json       one JSON object per line (fields as in shared/peers/)\n"
       "  --bf16       run the workload under bf16 autocast (workload name gets _bf16)\n"
       "  --threads N  OpenMP threads (default: all cores)\n"
       "  --iters N    timed iterations (default: the workload's)\n"
       "  --weights int8|int4  lm_gen_b1_p256_g128 with weight-only quantised linears (int4: groups of 128)\n"
       "  --kv-cache f16|f32   lm_gen_b1_p256_g128's KV cache (f16, as llama.cpp's default)\n"
       "  --profile    print each workload's op table (time per op and kernel, timed calls only) to stderr;\n"
       "               QS_PROFILE=1 (or =shapes) does the same for any command, at exit\n",
       cmd_bench},
      {"check", "run the op-table harness: reference vs optimised, gradcheck",
       "usage: qiusuo check [--mode test|grad|all] [--op NAME] [--verbose] [--seed N]\n"
       "  test: every optimised kernel against its reference (odd sizes, strided views, 1 and 2 threads,\n"
       "        guard bytes); grad: finite differences against autograd in f64. Exit code 2 on a failure.\n",
       cmd_check},
      {"demo", "the main job on built-in data: the Fashion-MNIST CNN, then a small KJV language model",
       "usage: qiusuo demo [--epochs 3] [--lm-steps 600] [--skip-cnn] [--out runs/demo] [--threads N] [--bf16]\n"
       "       qiusuo demo ct [--cases 80] [--epochs 8] [--out runs/demo] [--threads N] [--bf16]\n"
       "       qiusuo demo defect [--sequences 48] [--epochs 8] [--model cnn|spatiotemporal] [--out runs/demo]\n"
       "                          [--threads N]\n\n"
       "Trains the Fashion-MNIST CNN and prints its test accuracy, then trains a byte-level GPT on the King James\n"
       "Bible and prints its test perplexity and a generated sample. Checkpoints go under --out.\n"
       "demo ct: the medical case on synthetic chest CT (DICOM + LIDC XML): the 3D CNN with multi-scale fusion,\n"
       "attention gates and focal loss, its test ROC AUC with a bootstrap interval, and the AUC on an independent\n"
       "synthetic set (docs/ct.md).\n"
       "demo defect: the industrial case on synthetic steel-strip inspection sequences (images + Pascal VOC): the\n"
       "ResNet-18 detector, its test mAP (VOC and COCO) and detections drawn on test frames (docs/defect.md).\n",
       cmd_demo},
      {"export", "trace a checkpoint's inference forward into a static graph (qsgraph for qiusuo-run, or ONNX)",
       "usage: qiusuo export CKPT --out FILE [--batch 1] [--seq N] [--bf16] [--dynamic-batch] [--no-optimize]\n"
       "                     [--dynamic-seq [--max-seq L]] [--format qsg|onnx] [--example FILE.safetensors]\n\n"
       "Runs the model once on an example input (FashionCNN, float or quantised: images [batch, 1, 28, 28];\n"
       "language model: token ids [batch, seq], seq defaulting to the trained length) and records every primitive\n"
       "into FILE (a readable text graph) and FILE.safetensors (its parameters). --bf16 traces under autocast, so\n"
       "the graph holds the casts. Unless --no-optimize, the graph passes run: batch norms folded into the\n"
       "convolutions, constant nodes (weight casts) folded, common subexpressions merged, dead nodes removed.\n"
       "The graph replays inputs of exactly that shape, or of any batch size with --dynamic-batch (traced twice,\n"
       "the sizes that follow the batch written N) and, for a language model, of any length up to L (--dynamic-seq;\n"
       "L defaults to the trained length, the traced --seq to half of it; sizes that follow the length written S);\n"
       "the saved file is loaded back and checked against the model\n"
       "on another input. Run it with `qiusuo-run FILE`. See docs/graph.md.\n"
       "--format onnx (the default for a FILE ending in .onnx) writes one ONNX file (opset 17, float models;\n"
       "the batch dimension named N with --dynamic-batch) and runs ONNX's checker and shape inference on it.\n"
       "--example writes another input and the model's output for it (tensors \"input\", \"output\"), to check\n"
       "the file in another runtime (tests/onnx/ort_check.js does so in ONNX Runtime).\n",
       cmd_export},
      {"info", "show the build, the CPU features oneDNN uses, and the op table",
       "usage: qiusuo info [--ops]\n", cmd_info},
      {"train", "train a model: cnn (Fashion-MNIST), lm (a Transformer language model), mt (translation) or ct (CT nodules)",
       train_usage(), cmd_train},
      {"eval", "evaluate a language model (perplexity, bits per byte), a translation model (BLEU), the CNN, a CT model or a defect detector",
       "usage: qiusuo eval lm CKPT [--seq N] [--split test|validation|train] [--corpus PATH] [--windows N]\n"
       "                       [--batch 4] [--rope-scaling ntk|yarn --rope-factor F] [--allow-extrapolation] [--bf16]\n\n"
       "Perplexity over non-overlapping windows of N tokens (default: the trained length) of a split of the\n"
       "checkpoint's corpus (or --corpus). Lengths beyond what the position encoding supports are refused unless\n"
       "RoPE scaling is given or --allow-extrapolation measures the encoding as it is.\n\n"
       "usage: qiusuo eval mt CKPT [--split test|validation|train] [--beam K] [--sentences N] [--batch 64]\n\n"
       "Corpus BLEU (sacreBLEU's definition, 13a tokens) of the translations of a split of the checkpoint's data,\n"
       "and the teacher-forced loss per target token.\n\n"
       "usage: qiusuo eval cnn CKPT [--limit-test N] [--data DIR]\n\n"
       "Test accuracy of a Fashion-MNIST CNN checkpoint, float (qiusuo train cnn) or quantised (qiusuo quantize).\n\n"
       "usage: qiusuo eval ct CKPT --data DIR [--bootstrap 1000] [--threads N]\n\n"
       "ROC AUC (with its 95% bootstrap interval) of a CT nodule classifier (qiusuo train ct) on every labelled\n"
       "nodule of a LIDC-IDRI style tree, e.g. another synthetic set (qiusuo ct synth --seed 1).\n\n"
       "usage: qiusuo eval defect CKPT --data DIR [--window 4] [--threads N]\n\n"
       "mAP (VOC all-point and 11-point at IoU 0.5, COCO at .5:.95) and AP per class of a defect detector (qiusuo\n"
       "train defect) on a folder of sequences (e.g. DIR/test of qiusuo defect synth), frames t >= window - 1.\n",
       cmd_eval},
      {"quantize", "quantise a checkpoint to INT8 / INT4: the CNN (ptq, qat) or a language model (dynamic, weight-only)",
       "usage: qiusuo quantize CKPT --method ptq|qat|dynamic|weight-int8|weight-int4 --out CKPT_Q [options]\n\n"
       "FashionCNN (ptq, qat): conv-bn-relu fusion, per-channel s8 weights, u8 activations, then quant::convert to\n"
       "real INT8 layers (max pooling stays f32). Prints FP32 and INT8 test accuracy, % retained, weight bytes and\n"
       "file sizes, and writes CKPT_Q (safetensors; quantisation parameters in the header).\n"
       "  --calib-batches N  ptq: calibration batches of training images (32)\n"
       "  --qat-epochs N     qat: fine-tuning epochs (1; batch norms frozen at 50%, observers at 75% of the steps)\n"
       "  --qat-lr X         qat: peak learning rate, SGD momentum 0.9, cosine (1e-3)\n"
       "  --batch N          calibration / QAT batch (128)\n"
       "  --limit-train N --limit-test N --data DIR --seed N --threads N --quiet\n\n"
       "Language model (dynamic, weight-int8, weight-int4): every Linear of the Transformer blocks becomes a\n"
       "DynamicQuantizedLinear (s8 weights, activations quantised per token at run time) or a WeightOnlyLinear\n"
       "(s8 per channel, or s4 in groups of --group 128); embeddings, norms and the LM head stay f32.\n"
       "`qiusuo eval lm` and `qiusuo generate` accept the result.\n"
       "  --group N          weight-int4: group size (128; 32 also common)\n"
       "  --activations A    weight-int8/int4: q8 (quantised per block of 32 at run time, as llama.cpp; integer\n"
       "                     products, fastest decoding) or f32 (q8)\n\n"
       "Language model (ptq, qat): static INT8 - every Linear of the blocks a QuantizedLinear (s8 per-channel\n"
       "weights, u8 per-tensor activations) via prepare + calibration on training windows (ptq) or prepare_qat +\n"
       "a short AdamW fine-tune (qat), then convert. Prints test perplexity FP32 vs INT8.\n"
       "  --calib-batches N  ptq: batches of --batch training windows (16)\n"
       "  --qat-steps N      qat: fine-tuning steps (100; observers frozen at 75%)   --qat-lr X (1e-4)\n"
       "  --windows N        test windows for the perplexities (50; 0: all)   --batch N (8) --seed N --quiet\n",
       cmd_quantize},
      {"prune", "structured pruning: remove whole CNN channels (L1, L2, batch-norm scale) or LM feed-forward neurons",
       "usage: qiusuo prune CKPT --out CKPT_P [--method l1-channel|l2-channel|bn-scale] [--ratio 0.5] [--global]\n"
       "                    [--per-layer FILE] [--finetune-epochs 0] [--finetune-lr 0.05] [--iterations 1]\n"
       "                    [--round-to N] [--latency-rounds 5] [--limit-train N] [--limit-test N] [--threads N]\n"
       "                    [--data DIR]\n\n"
       "Traces the float FashionCNN, groups the channels that must go together (a convolution's outputs with its\n"
       "batch norm and the next layer's inputs), removes --ratio of each group's lowest-scoring channels (L1 or L2\n"
       "norm of the filters, Li et al. 2017; or |gamma| of the batch norm, Liu et al. 2017) and writes a smaller\n"
       "dense FashionCNN to CKPT_P (its config holds the new widths: it loads, quantises and exports like any\n"
       "other). --global: rank all layers' channels together (per-weight scores; every layer keeps one) and remove\n"
       "--ratio of all of them. --per-layer: a JSON object of ratios by layer, {\"c1\": 0.25, \"c3\": 0.5}.\n"
       "--iterations K: prune in K steps, each followed by the fine-tuning, step k keeping (1 - ratio)^(k/K).\n"
       "--round-to N: each layer keeps a multiple of N channels (rounded up; oneDNN blocks 8 or 16 channels).\n"
       "Prints the channel groups, then parameters, FLOPs, file bytes, test accuracy and measured latency\n"
       "(inference on 64 images, one training step on 128; unpruned and pruned alternating) before and after.\n\n"
       "usage: qiusuo prune LM_CKPT --method ffn|heads --out CKPT_P [--ratio 0.5] [--criterion l1-channel|l2-channel]\n"
       "                    [--importance-batches 4] [--finetune-steps 0] [--finetune-lr 3e-4] [--eval-windows 50]\n"
       "                    [--latency-rounds 5]\n\n"
       "ffn: the feed-forward hidden neurons (GPT's c_fc, DeepSeek's SwiGLU gate and up together; in MoE layers\n"
       "inside every routed and shared expert), the same ratio in every block. heads: the attention heads (MHA;\n"
       "with grouped-query attention, whole key/value groups; MLA heads with their W_UK/W_UV rows) whose masking\n"
       "raises the loss least (Michel et al. 2019), the same count in every layer; the model keeps its head dims\n"
       "with fewer heads. Prints test perplexity, parameters, FLOPs, file bytes and forward latency before and\n"
       "after, optionally after AdamW fine-tuning on training windows, and a JSON line with what was removed.\n"
       "See docs/prune.md.\n",
       cmd_prune},
      {"report", "the handbook's claims beside qiusuo's measurements: every claim experiment, one page",
       "usage: qiusuo report --out DIR [--quick] [--experiments pe,heads,quant,prune,ct,defect] [--threads N] [--quiet]\n"
       "       qiusuo report --out DIR --from RESULTS   (read RESULTS/<experiment>/results.json, run nothing)\n\n"
       "Runs every claim experiment into DIR/<experiment>/ (pe, quant, prune, ct and defect as `qiusuo experiment`\n"
       "does; heads: a translation model trained on the synthetic task, then `qiusuo heads`), at full budgets\n"
       "(hours) or with --quick at their CI sizes (minutes), and writes DIR/report.md, report.html (the table and\n"
       "every plot) and report.json: a row per handbook claim with the handbook's number, ours, the setting and a\n"
       "verdict (reproduced, not reproduced, inconclusive, not measurable, not run) with its rule or reason.\n"
       "--from reads the results of earlier runs instead (e.g. docs/results). See docs/results/report/.\n",
       cmd_report},
      {"experiment", "run a measured experiment of the curriculum: pe (positional encodings), quant, prune, ct, defect, deepseek",
       std::string("usage: qiusuo experiment pe --out DIR [--quick] [--corpus PATH] [--encodings rope,alibi,...] "
                   "[--train-len N]\n"
                   "                            [--steps N] [--eval-tokens N] [--seeds 3] [--seed N] [--threads N]\n\n"
                   "pe: one language model per positional encoding (") +
           fmt::format("{}", fmt::join(encodings, ", ")) + "), same\n"
       "size, data, seed and steps, trained at --train-len (1024) and evaluated at 0.5x, 1x, 2x and 4x that\n"
       "length (RoPE also with NTK and YaRN scaling), --seeds models each (seeds --seed, --seed + 1, ...): the mean\n"
       "and sd over seeds, the validation loss every steps/10 and whether it had flattened (fell < 1% over the last\n"
       "fifth). Writes DIR/results.json, results.md, perplexity.svg, learning_curves.svg and one checkpoint folder\n"
       "per encoding and seed. --quick: a CI-sized run (tiny models, 128 tokens, 2 seeds). See docs/experiments/pe.md.\n\n"
       "usage: qiusuo experiment quant --out DIR [--quick] [--cnn CKPT] [--lm CKPT] [--threads N]\n"
       "       qiusuo experiment quant --replot DIR    (redraw DIR's plots from its results.json)\n\n"
       "quant: the Fashion-MNIST CNN in FP32, PTQ-INT8 and QAT-INT8 and a KJV LM in FP32, dynamic INT8 and\n"
       "weight-only INT8/INT4: accuracy or perplexity, % retained, weight and file bytes, latency; the handbook's\n"
       "claims beside the measured values. DIR/results.json and results.md. See docs/QUANTIZATION.md.\n\n"
       "usage: qiusuo experiment prune --out DIR [--quick] [--cnn CKPT] [--lm CKPT] [--ratios 0.1,0.3,0.5,0.7]\n"
       "                               [--methods l1-channel,l2-channel,bn-scale] [--finetune-epochs 2]\n"
       "                               [--finetune-lr 0.05] [--lm-finetune-steps 100] [--threads N]\n"
       "       qiusuo experiment prune --replot DIR    (redraw DIR's plots from its results.json)\n\n"
       "prune: the Fashion-MNIST CNN pruned by each method at each ratio and fine-tuned, beside the unpruned model\n"
       "fine-tuned as long: parameters, FLOPs, file bytes, accuracy, measured speed-up of inference and training;\n"
       "per-layer sensitivity; a KJV LM's feed-forward neurons at each ratio (perplexity, FLOPs, latency); Li et\n"
       "al. 2017's numbers beside. DIR/results.json, results.md and four SVG plots.\n"
       "See docs/prune.md.\n\n"
       "usage: qiusuo experiment ct --out DIR [--quick] [--data DIR] [--eval-data DIR] [--cases 160] [--seeds 3]\n"
       "                            [--epochs 12] [--threads N] [--quiet]\n\n"
       "ct: the CT ablation: the 3D CNN with cross entropy, + multi-scale fusion, + attention gates, + focal loss,\n"
       "each over --seeds seeds on a synthetic LIDC-style set (written to DIR/data unless --data) and scored on its\n"
       "test split and on an independent set, with 95% bootstrap intervals. DIR/results.json, results.md, roc.svg.\n"
       "See docs/ct.md.\n\n"
       "usage: qiusuo experiment defect --out DIR [--quick] [--data DIR] [--seeds 3] [--epochs 12] [--frames 4]\n"
       "                                [--depth 18] [--width 32] [--threads N] [--quiet]\n\n"
       "defect: the per-frame CNN detector against the spatiotemporal one (a Transformer over the last --frames\n"
       "frames), --seeds each on synthetic inspection sequences (written to DIR/data unless --data), scored on the\n"
       "same test frames: mAP@0.5 and COCO mAP with their spread, AP per class, the difference beside the\n"
       "handbook's +8.6% on NEU-DET. DIR/results.json, results.md, map.svg, per_class.svg, runs/. See docs/defect.md.\n\n"
       "usage: qiusuo experiment deepseek --out DIR [--quick] [--models dense,mla-moe,mla-moe-nobias] [--steps 1500]\n"
       "                                  [--seq 256] [--seeds 2] [--seed N] [--corpus PATH] [--threads N] [--quiet]\n"
       "       qiusuo experiment deepseek --replot DIR    (rewrite DIR's results.md and plots from its results.json)\n\n"
       "deepseek: KJV language models of DeepSeek blocks alike but for attention (MHA or MLA) and feed-forward\n"
       "(dense SwiGLU or MoE of equal active width): dense, mla, moe, mla-moe (balanced by router biases, no\n"
       "auxiliary loss), mla-moe-nobias (no balancing), mla-moe-aux (a balance loss). Test perplexity, parameters\n"
       "(all and active per token), KV-cache bytes per token, training speed, validation loss and expert load over\n"
       "training. DIR/results.json, results.md, learning_curves.svg, expert_load.svg. See docs/experiments/deepseek.md.\n",
       cmd_experiment},
      {"generate", "generate text from a language-model checkpoint",
       "usage: qiusuo generate CKPT --prompt TEXT [--max-tokens 200] [--temperature 0.8] [--top-k 0] [--top-p 0.95]\n"
       "                       [--seed 0] [--kv-cache f32|f16] [--threads N]\n\n"
       "Samples with the KV cache (temperature 0: greedy). Prints the prompt and its continuation.\n"
       "--kv-cache f16 keeps the keys and values of the attention layers in half precision (llama.cpp's\n"
       "default): half the bytes each new token reads from the cache; MLA's compressed cache stays f32.\n",
       cmd_generate},
      {"heads", "what each attention head does: positional, syntactic, rare-word, alignment heads; importance",
       "usage: qiusuo heads CKPT --out DIR [--data synthetic|corpus|FILE] [--sentences 500] [--importance-sentences 200]\n"
       "                   [--bleu-budget 0.5] [--max-tokens 64] [--threads N] [--quiet]\n\n"
       "Captures the attention of a translation checkpoint (`qiusuo train mt`) over --sentences pairs (synthetic:\n"
       "its own test split, with gold parses and alignments; FILE: a .jsonl/.tsv corpus from `qiusuo mt-data`) or\n"
       "of a language-model checkpoint over lines of its corpus' test split (FILE: a text file; lines cut to\n"
       "--max-tokens). Scores every head: confidence, positional (one offset >= 90%), syntactic per relation\n"
       "against the positional baseline, rare words, cross-attention alignment, and (translation) importance by\n"
       "masking each head on --importance-sentences pairs (0: skip) plus greedy pruning within --bleu-budget.\n"
       "Writes DIR/heads.json (the viewer's --analysis format plus all metrics), heads.md and heads.svg.\n"
       "See docs/tutorial-attention.md.\n",
       cmd_heads},
      {"serve", "the attention viewer: a local web page over a language-model or translation checkpoint",
       "usage: qiusuo serve --model CKPT [--host 127.0.0.1] [--port 8080] [--analysis FILE] [--assets DIR]\n"
       "                    [--max-tokens 1024] [--body-limit 262144] [--request-timeout 10] [--client-workers 4]\n"
       "                    [--client-connections 128] [--threads N]\n\n"
       "Serves the viewer page (type a text; head view, model view, matrix heatmap) and its JSON API\n"
       "(GET /api/model, POST /api/attention; see docs/viewer-api.md) on http://HOST:PORT/ until Ctrl-C.\n"
       "  --port 0          any free port (printed)\n"
       "  --analysis FILE   head roles to label the heads with ({\"heads\":[{\"layer\":0,\"head\":1,\"roles\":[...]}]},\n"
       "                    as written by `qiusuo heads`)\n"
       "  --assets DIR      the page's folder (default: web/viewer of the source tree)\n"
       "  --max-tokens N    tokens per request (1024; also capped by the model's position encoding)\n"
       "  --request-timeout S  a request's head and body must arrive within S seconds of its first byte (408)\n"
       "  --client-workers N   of the 8 worker threads, how many one client address may hold at once\n"
       "  --client-connections N  open connections one client address may hold (128 of 512); clients behind\n"
       "                    one NAT or proxy share an address: raise both for such a deployment\n",
       cmd_serve},
      {"ct", "CT data: a synthetic chest CT set (DICOM + LIDC XML + NIfTI), or a description of one",
       "usage: qiusuo ct synth --out DIR [--cases 8] [--seed 0] [--slices 48] [--matrix 128] [--pixel-mm 1.2]\n"
       "                       [--slice-mm 2] [--max-nodules 3] [--transfer-syntax explicit-little|implicit-little|\n"
       "                       jpeg-ls-lossless|jpeg-lossless|rle]\n"
       "       qiusuo ct info PATH\n"
"\n"
       "synth writes chest CT volumes with lung nodules whose look follows a latent malignancy, each as a DICOM\n"
       "series with a LIDC-IDRI style reader XML in TCIA's folder layout (DIR/LIDC-SYN-0001/<study>/<series>/),\n"
       "a NIfTI copy (DIR/nifti/) and DIR/truth.json. info reads a DICOM series folder, a NIfTI file, or a\n"
       "LIDC-IDRI download (every series with its XML: nodules grouped across readers and labelled by the mean\n"
       "malignancy rule: > 3 malignant, < 3 benign, 3 excluded). Training and evaluation: qiusuo train ct,\n"
       "qiusuo eval ct. See docs/ct.md.\n",
       cmd_ct},
      {"defect", "defect-detection data: synthetic steel-strip inspection sequences (images + VOC XML), or a "
                 "description of a NEU-DET tree",
       "usage: qiusuo defect synth --out DIR [--train 48] [--val 12] [--test 12] [--frames 8] [--size 128]\n"
       "                           [--speed 10] [--max-defects 4] [--format png|jpg] [--seed 0]\n"
       "       qiusuo defect info PATH\n"
       "\n"
       "synth writes sequences of frames of a moving steel strip carrying NEU-DET's six defect classes (crazing,\n"
       "inclusion, patches, pitted_surface, rolled-in_scale, scratches), each frame an image with its Pascal VOC\n"
       "file: DIR/<train|val|test>/seq_<k>/frame_<t>.png + .xml. Defects fade in and out from frame to frame;\n"
       "the camera shakes, the light drifts, some frames blur. info reads a NEU-DET tree (ANNOTATIONS/ + IMAGES/,\n"
       "or <split>/annotations/ + <split>/images/<class>/) or a folder of sequences and counts its boxes per\n"
       "class. See docs/defect.md.\n",
       cmd_defect},
      {"detect", "find steel-surface defects in image files with a trained detector, and draw them",
       "usage: qiusuo detect CKPT IMAGE... --out DIR [--threshold 0.3] [--threads N]\n\n"
       "Runs a defect detector (qiusuo train defect) on grey or colour PNG, JPEG or BMP files and prints one JSON\n"
       "line per image: its boxes (class, score, x1 y1 x2 y2 in pixels) above the threshold, after NMS; each image\n"
       "is drawn with its boxes into DIR. A spatiotemporal model reads the images as one sequence in the order\n"
       "given: each is detected with the frames before it (the first T - 1 are context only). See docs/defect.md.\n",
       cmd_detect},
      {"mt-data", "write the synthetic parallel corpus (with gold parses and alignments) and its grammar",
       "usage: qiusuo mt-data --out DIR [--format jsonl|tsv] [--data-seed N] [--train-pairs N] [--valid-pairs N]\n"
       "                      [--test-pairs N] [--homographs N]\n\n"
       "Writes DIR/train, valid and test (.jsonl or .tsv: words, head indices, relations, tags and the word\n"
       "alignment of each pair) and DIR/README.md describing the grammar, as `qiusuo train mt` generates them.\n",
       cmd_mt_data},
      {"translate", "translate a sentence with a translation checkpoint",
       "usage: qiusuo translate CKPT --text \"the dog sees a cat\" [--beam K] [--threads N]\n\n"
       "Greedy decoding with the KV cache (--beam K: beam search of width K). Words are whitespace-separated;\n"
       "words the model never saw become <unk>.\n",
       cmd_translate},
      {"tokenizer", "train a byte-level BPE tokenizer (tokenizer.json), or encode text with one",
       "usage: qiusuo tokenizer train --out FILE [--corpus FILE|DIR] [--vocab 8192] [--min-frequency 2]\n"
       "       qiusuo tokenizer encode --tokenizer FILE [TEXT...]   (TEXT or stdin; prints the ids)\n\n"
       "train learns GPT-2 style byte-level BPE merges on the corpus's train split (90%) and saves them in\n"
       "the Hugging Face tokenizer.json layout, then reports bytes per token on the validation split.\n"
       "  --corpus PATH      a UTF-8 file, or a folder of them (default: the King James Bible, from the\n"
       "                     Debian packages bible-kjv and bible-kjv-text, cached in $QIUSUO_CACHE)\n"
       "  --vocab N          vocabulary size, 256 byte tokens included (8192)\n"
       "  --min-frequency N  stop when the most frequent pair occurs fewer times (2)\n",
       cmd_tokenizer},
  };
  return c;
}

void print_usage(std::ostream& os) {
  os << "qiusuo — a C++ deep-learning toolkit, from first principles to deployment\n\nusage: qiusuo <command> [options]\n\n";
  for (auto& c : commands()) os << "  " << c.name << std::string(10 - std::min<size_t>(9, std::strlen(c.name)), ' ') << c.summary << "\n";
  os << "\nRun 'qiusuo <command> --help' for a command's options.\n";
}

}  // namespace qs::cli
