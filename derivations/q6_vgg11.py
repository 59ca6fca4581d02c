"""Q6: VGG-11 output shapes and parameter counts (with bias), checked against torchvision's VGG-11.

The table is computed from the formulas
    CONVk-N on an HxWxC input:  output HxWxN (stride 1, padding 1),  params (k*k*C + 1) * N
    POOL2 on HxWxC:             output floor(H/2) x floor(W/2) x C,  params 0
    FC-N on n inputs:           output N,                           params (n + 1) * N
and then checked, row by row, against forward hooks on torchvision.models.vgg11(weights=None)
fed a 1x3x224x224 input. Both checks take the table function they test as an argument, so tests
can hand them a wrong formula (a dropped bias, a pooling that rounds up) and see them fail; the tests
also pin the total to the published VGG-11 count, 132,863,336.
"""
import sys

NAME = "q6_vgg11"
PROFILES = {"full": {"input": [224, 224, 3], "kernel": 3,
                     "features": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
                     "fc": [4096, 4096, 1000]}}


def vgg11_table(cfg: dict) -> list[dict]:
    """The assignment's table: one row per layer with its output shape and parameter count."""
    h, w, c = cfg["input"]
    k = cfg["kernel"]
    rows = [{"layer": "INPUT", "shape": [h, w, c], "params": 0}]
    for v in cfg["features"]:
        if v == "M":
            h, w = h // 2, w // 2          # round down, as the assignment says for odd sizes
            rows.append({"layer": "POOL2", "shape": [h, w, c], "params": 0})
        else:
            rows.append({"layer": f"CONV{k}-{v}", "shape": [h, w, v], "params": (k * k * c + 1) * v})
            rows.append({"layer": "ReLU", "shape": [h, w, v], "params": 0})
            c = v
    n = h * w * c
    for v in cfg["fc"]:
        rows.append({"layer": f"FC-{v}", "shape": [v], "params": (n + 1) * v})
        n = v
    rows.append({"layer": "SOFTMAX", "shape": [n], "params": 0})
    return rows


def torchvision_rows() -> list[dict]:
    """The same rows measured on torchvision's VGG-11 by forward hooks (no weights downloaded)."""
    import torch
    import torchvision

    model = torchvision.models.vgg11(weights=None).eval()
    seen = []

    def hook(module, _inp, out):
        shape = list(out.shape[1:])
        shape = [shape[1], shape[2], shape[0]] if len(shape) == 3 else shape   # CHW -> HWC
        seen.append({"module": type(module).__name__, "shape": shape,
                     "params": sum(p.numel() for p in module.parameters(recurse=False))})

    for m in list(model.features) + [m for m in model.classifier if isinstance(m, torch.nn.Linear)]:
        m.register_forward_hook(hook)
    with torch.no_grad():
        logits = model(torch.zeros(1, 3, 224, 224))
    probs = torch.softmax(logits, dim=1)
    seen.append({"module": "Softmax", "shape": list(probs.shape[1:]), "params": 0})
    seen.insert(0, {"module": "Input", "shape": [224, 224, 3], "params": 0})
    return seen, sum(p.numel() for p in model.parameters())


KINDS = {"INPUT": "Input", "POOL2": "MaxPool2d", "ReLU": "ReLU", "SOFTMAX": "Softmax"}


def check_rows(config, measured, table=vgg11_table) -> dict:
    """Every row's layer kind, output shape and parameter count against torchvision's hooks."""
    rows = table(config)
    mismatches = [] if len(rows) == len(measured) else [f"row count {len(rows)} != {len(measured)}"]
    for ours, theirs in zip(rows, measured):
        kind = KINDS.get(ours["layer"], "Conv2d" if ours["layer"].startswith("CONV") else "Linear")
        if (kind, ours["shape"], ours["params"]) != (theirs["module"], theirs["shape"], theirs["params"]):
            mismatches.append(f"{ours['layer']}: ours {ours['shape']}/{ours['params']} vs "
                              f"torchvision {theirs['module']} {theirs['shape']}/{theirs['params']}")
    return {"check": "every row's shape and parameter count equals torchvision's vgg11 (hooks)",
            "passed": not mismatches, "detail": mismatches[:5]}


def check_total(config, torch_total, table=vgg11_table) -> dict:
    """The table's total against the sum over all of torchvision's vgg11 parameters."""
    total = sum(r["params"] for r in table(config))
    return {"check": "total equals sum of torchvision vgg11 parameters",
            "passed": total == torch_total, "detail": [total, torch_total]}


def run(config, ctx=None):
    from hw2.cli import Outcome

    rows = vgg11_table(config)
    measured, torch_total = torchvision_rows()
    checks = [check_rows(config, measured), check_total(config, torch_total)]
    total = sum(r["params"] for r in rows)
    fc = sum(r["params"] for r in rows if r["layer"].startswith("FC"))
    metrics = {
        "rows": [{"layer": r["layer"], "output": "x".join(map(str, r["shape"])), "params": r["params"]}
                 for r in rows],
        "total_params": total,
        "fc_params": fc,
        "conv_params": total - fc,
        "fc_share": fc / total,
        "first_fc_params": rows[[r["layer"] for r in rows].index("FC-4096")]["params"],
        "checks": checks,
        "all_checks_passed": all(c["passed"] for c in checks),
    }
    return Outcome(metrics=metrics)


if __name__ == "__main__":
    from hw2.cli import main
    sys.exit(main(name=NAME, profiles=PROFILES, run=run, source=__file__))
