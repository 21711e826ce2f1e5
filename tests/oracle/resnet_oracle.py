"""Oracle for the ResNet test: torchvision's own resnet18 and resnet50 (10 classes) with
random weights and non-trivial batch-norm statistics, their state dicts as torchvision
names them, an input, and the logits in evaluation mode (running statistics) and in
training mode (batch statistics), written as safetensors.
Usage: resnet_oracle.py OUT.safetensors"""
import sys, os, torch, torchvision
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "io"))
import safetensors_oracle as st  # the safetensors format on the PyTorch side

torch.manual_seed(4321)
out = {}
for depth in (18, 50):
    m = getattr(torchvision.models, f"resnet{depth}")(weights=None, num_classes=10)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5); mod.bias.uniform_(-0.2, 0.2)
                mod.running_mean.uniform_(-0.2, 0.2); mod.running_var.uniform_(0.5, 2.0)
    p = f"r{depth}."
    for k, v in m.state_dict().items():
        out[p + "state." + k] = v.clone()
    x = torch.randn(2, 3, 64, 64)
    out[p + "input"] = x
    with torch.no_grad():
        out[p + "eval_logits"] = m.eval()(x)
        out[p + "train_logits"] = m.train()(x)
st.write(sys.argv[1], out, {"torch": torch.__version__, "torchvision": torchvision.__version__})
