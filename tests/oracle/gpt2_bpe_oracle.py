"""GPT-2's own byte-level BPE (openai/gpt-2 src/encoder.py, with the `regex` module) as the
oracle for qiusuo's tokenizer.

usage: gpt2_bpe_oracle.py TOKENIZER_JSON TEXTS_JSON OUT_JSON
TEXTS_JSON: a JSON list of strings. OUT_JSON: {"words": [[word, ...], ...], "ids": [[id, ...], ...]}.
Reads the Hugging Face tokenizer.json layout (merges as "a b" strings or ["a", "b"] pairs).
"""
import json
import sys

import regex as re

PAT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def get_pairs(word):
    return set(zip(word, word[1:]))


class Encoder:
    def __init__(self, tokenizer):
        model = tokenizer["model"]
        self.encoder = model["vocab"]
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        self.bpe_ranks = {}
        for rank, m in enumerate(merges):
            self.bpe_ranks.setdefault(m, rank)
        self.byte_encoder = bytes_to_unicode()

    def bpe(self, token):  # verbatim in spirit from openai/gpt-2 encoder.py
        word = tuple(token)
        pairs = get_pairs(word)
        if not pairs:
            return [token]
        while True:
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                new_word.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = get_pairs(word)
        return list(word)

    def encode(self, text):
        ids = []
        for token in re.findall(PAT, text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(token))
        return ids


def main():
    tok_path, texts_path, out_path = sys.argv[1:4]
    with open(tok_path, encoding="utf-8") as f:
        enc = Encoder(json.load(f))
    with open(texts_path, encoding="utf-8") as f:
        texts = json.load(f)
    out = {"words": [re.findall(PAT, t) for t in texts], "ids": [enc.encode(t) for t in texts]}
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
