#!/usr/bin/env python3
"""PyTorch reference for `seer bench`: the same measurements with transformers'
CLIPModel (ViT-B/32 architecture, random weights) and a PIL + DataLoader pipeline,
on the CPU or a CUDA GPU (eager mode, f32, the framework's defaults).

With `--model DIR` (what `seer bench --model DIR` passes for a DINOv2 or SigLIP
folder) it loads that folder with transformers' AutoModel and times what seer
times for the family: the image embedding (DINOv2: `pooler_output`; SigLIP:
`get_image_features`) on random pixels, SigLIP's text embedding of the prompts
(tokenised and padded to 64 inside the timed loop, as seer does), and end to end
from files through the checkpoint's own image processor.

When ONNX Runtime (`pip install onnxruntime`) or OpenVINO (`pip install
openvino`) is importable, the same random-weight towers are exported with
`torch.onnx.export` and timed there too, on the same inputs (CPU only): in f32,
ONNX Runtime with dynamic int8 (`quantize_dynamic`, QInt8 weights) and OpenVINO
with `INFERENCE_PRECISION_HINT` bf16 (skipped where the CPU has no bf16). PyTorch itself runs again with its weights
in bf16 (oneDNN, AMX where the CPU has it; on a GPU, cuBLAS on the tensor cores: the
only other engine measured there). Each engine reports its cosine to the
PyTorch f32 output. Their figures go under "onnxruntime", "openvino" and
"pytorch" with one object per precision; an engine that is missing is skipped
with one line.

Prints progress to stderr and one JSON object as the last line of stdout. Run by
`seer bench --reference /path/to/python`, which passes the token ids it embeds
(`--tokens`), or by hand with that venv (then open_clip tokenizes the prompts).
"""
import argparse
import contextlib
import importlib.util
import json
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from transformers import CLIPConfig, CLIPModel

# The same prompts seer bench uses (crates/seer-cli/src/commands/bench.rs).
PROMPTS = [
    "a photo of a dog.", "a photo of a cat.", "a blurry photo of a truck.", "a drawing of an airplane.",
    "a photo of the small bird.", "a close-up photo of a frog.", "a photo of a horse in a field.",
    "a photo of a ship at sea.", "itap of a deer.", "a bright photo of a red car.",
    "a black and white photo of the automobile.", "art of the tench.", "a photo of a goldfish.",
    "a photo of the large great white shark.", "a origami hammerhead shark.", "a photo of a beach at sunset",
    "two people riding bicycles down a city street", "a bowl of fruit on a wooden table",
    "a snowy mountain under a blue sky", "a child playing with a ball in the park",
    "a plate of spaghetti with tomato sauce", "an old castle on a hill", "a cup of coffee and a laptop",
    "a group of friends at a party", "a dog catching a frisbee", "a cat sleeping on a sofa",
    "a red double-decker bus", "a lighthouse by the ocean", "fireworks over a river at night",
    "a bookshelf full of books", "a vintage typewriter", "a field of sunflowers",
]
EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


class Files(Dataset):
    def __init__(self, paths, transform):
        self.paths, self.transform = paths, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.transform(Image.open(self.paths[i]).convert("RGB"))


def synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, items, iterations):
    fn()  # warm-up
    synchronize()
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    synchronize()  # GPU work is asynchronous
    return items * iterations / (time.perf_counter() - start)


def token_tensor(args):
    """(N, 77) ids, zero padded, like open_clip.tokenize."""
    if args.tokens is None:
        import open_clip

        return open_clip.tokenize(PROMPTS)
    ids = json.loads(args.tokens)
    out = torch.zeros(len(ids), 77, dtype=torch.long)
    for row, seq in enumerate(ids):
        out[row, : len(seq)] = torch.tensor(seq[:77])
    return out


def image_transform():
    """open_clip's eval transform (resize shortest side bicubic, centre crop, normalise)."""
    try:
        import open_clip

        return open_clip.image_transform(224, is_train=False)
    except ImportError:  # the same steps through torchvision
        from torchvision import transforms as T

        return T.Compose([
            T.Resize(224, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
        ])


def family_bench(args, device):
    """A DINOv2 or SigLIP folder: the family's embedding, as seer's ImageEncoder and
    TextEncoder define it."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    config = AutoConfig.from_pretrained(args.model)
    model = AutoModel.from_pretrained(args.model).eval().to(device)
    processor = AutoImageProcessor.from_pretrained(args.model)
    if config.model_type.startswith("dinov2"):
        embed_image = lambda px, m=model: m(pixel_values=px).pooler_output
        size = processor.crop_size["height"]
    else:
        embed_image = lambda px, m=model: features(m.get_image_features(pixel_values=px))
        size = processor.size["height"]
    out = {"torch": torch.__version__, "threads": args.threads, "device": args.device, "isa_cap": args.isa_cap,
           "model": args.model, "family": config.model_type, "image_model": {}}
    image_tower = Tower("image", "pixel_values", model, embed_image, torch.float32)
    towers = [image_tower]
    with torch.inference_mode():
        for b in [int(x) for x in args.batch_sizes.split(",")]:
            pixels = torch.randn(b, 3, size, size, device=device)
            image_tower.cases.append(((("image_model", str(b))), lambda p=pixels: p, b))
            ips = timed(lambda: embed_image(pixels), b, args.iterations)
            out["image_model"][str(b)] = ips
            print(f"torch image model-only   batch {b:>3}: {ips:8.2f} images/s", file=sys.stderr)
        if hasattr(model, "get_text_features"):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(args.model)

            def tokenize():
                return tokenizer(PROMPTS, padding="max_length", max_length=64, truncation=True,
                                 return_tensors="pt")["input_ids"].to(device)

            embed_text = lambda ids, m=model: features(m.get_text_features(input_ids=ids))
            tps = timed(lambda: embed_text(tokenize()), len(PROMPTS), args.iterations)
            out["text"] = tps
            print(f"torch text (padded to 64) batch {len(PROMPTS):>3}: {tps:8.2f} texts/s", file=sys.stderr)
            # Tokenised inside the timed loop, as here and in seer.
            text_tower = Tower("text", "input_ids", model, embed_text, torch.long)
            text_tower.cases.append((("text",), tokenize, len(PROMPTS)))
            towers.append(text_tower)
    files = image_files(args)
    if files:
        def transform(image):
            return processor(images=image, return_tensors="pt")["pixel_values"][0]

        out.update(end_to_end(args, device, files, transform, embed_image))
    out.update(other_engines(args, towers, files))
    print(json.dumps(out))


def image_files(args):
    root = Path(args.images)
    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS) if root.is_dir() else []
    return [found[i % len(found)] for i in range(args.files)] if found else []


def end_to_end(args, device, files, transform, embed_image, label="torch"):
    b = int(args.batch_sizes.split(",")[-1])
    cuda = device.type == "cuda"
    loader = DataLoader(Files(files, transform), batch_size=b, num_workers=args.threads, pin_memory=cuda)
    start = time.perf_counter()
    n = 0
    with torch.inference_mode():
        for batch in loader:
            embed_image(batch.to(device, non_blocking=True))
            n += batch.shape[0]
    synchronize()
    ips = n / (time.perf_counter() - start)
    print(f"{label + ' end-to-end':<27} ({n} files): {ips:8.2f} images/s", file=sys.stderr)
    return {"e2e": ips, "e2e_files": n}


def features(out):
    """transformers 5 returns a model output from get_*_features: the projected
    embedding is its pooler_output."""
    return out if torch.is_tensor(out) else out.pooler_output


class Tower:
    """One embedding function and the inputs seer times it on: `cases` holds
    (result key path, input maker, items per call); the first case's input also
    measures agreement with PyTorch f32. `embed(x, m=model)` runs on `model`
    unless given another copy (PyTorch bf16)."""

    def __init__(self, name, input_name, model, embed, dtype):
        self.name, self.input_name, self.embed, self.dtype = name, input_name, embed, dtype
        self.model = model
        self.cases = []

    def export(self, path):
        embed = self.embed

        class Wrapper(torch.nn.Module):
            def __init__(self, model):
                super().__init__()
                self.model = model  # its weights become the graph's initialisers

            def forward(self, x):
                return embed(x)

        example = self.cases[0][1]().cpu().clone()  # not an inference tensor
        # Batch (and token count) vary between cases.
        axes = {0: "batch", 1: "tokens"} if self.dtype == torch.long else {0: "batch"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(Wrapper(self.model), (example,), str(path), input_names=[self.input_name],
                              output_names=["embeds"], dynamic_axes={self.input_name: axes, "embeds": {0: "batch"}},
                              opset_version=17, dynamo=False)


def cosine_stats(a, b):
    a = torch.nn.functional.normalize(torch.as_tensor(a, dtype=torch.float32).cpu(), dim=-1)
    b = torch.nn.functional.normalize(torch.as_tensor(b, dtype=torch.float32).cpu(), dim=-1)
    c = (a * b).sum(-1)
    return float(c.min()), float(c.mean())


def torch_engine(threads, towers, isa_cap):
    """PyTorch with a bf16 copy of the towers' model: the same embed functions
    on bf16 weights and pixels, outputs read back as f32. The towers share one
    model, so it is copied once."""
    import copy

    copies = {}

    def bf16(path):
        tower = next(t for t in towers if t.name == Path(path).stem)
        key = id(tower.model)
        if key not in copies:
            copies[key] = copy.deepcopy(tower.model).to(torch.bfloat16)
        model = copies[key]

        def run(x):  # a tensor on the model's device (engine_bench), as PyTorch f32 is fed
            if x.is_floating_point():
                x = x.to(torch.bfloat16)
            with torch.inference_mode():
                return tower.embed(x, model).float()

        return run, {}

    # Capped at AVX2 (ATEN_CPU_CAPABILITY and ONEDNN_MAX_CPU_ISA, set by the
    # caller) bf16 is emulated: 1.9 images/s against 12 in f32 (Intel Xeon,
    # family 6 model 207), minutes a figure and no one's deployment.
    if isa_cap == "avx2":
        return torch.__version__, [("bf16", "capped at AVX2 there are no bf16 instructions (PyTorch emulates them)")]
    return torch.__version__, [("bf16", bf16)]


def ort_engine(threads, towers, isa_cap):
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def session(path):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        s = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = s.get_inputs()[0].name
        return lambda x: s.run(None, {name: x})[0], {}

    def int8(path):
        quantized = path.with_suffix(".int8.onnx")
        if not quantized.exists():
            # Quiet its advice to pre-process first: the default recipe is what's measured.
            logging.disable(logging.WARNING)
            try:
                quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8)
            finally:
                logging.disable(logging.NOTSET)
        return session(quantized)

    return ort.__version__, [("f32", session), ("int8", int8)]


def openvino_engine(threads, towers, isa_cap):
    import openvino as ov

    core = ov.Core()

    def compiled(precision):
        def make(path):
            # f32 explicitly: on CPUs with AMX OpenVINO defaults to bf16.
            model = core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                          "INFERENCE_PRECISION_HINT": precision})
            request = model.create_infer_request()
            used = model.get_property("INFERENCE_PRECISION_HINT").get_type_name()
            return lambda x: request.infer({0: x})[0].copy(), {"inference_precision": used}

        return make

    # Without bf16 in the CPU it still honours the hint, emulating bf16 at about
    # 1/50 of its f32 rate (0.5 images/s on an Ice Lake Xeon): a figure no one
    # deploys, so that precision is skipped with the reason.
    # Capped at AVX2 (ONEDNN_MAX_CPU_ISA, set by the caller) the CPU still lists
    # BF16 here, but oneDNN may not use it: the same emulation.
    if isa_cap == "avx2":
        bf16 = "capped at AVX2 there are no bf16 instructions (OpenVINO would emulate them)"
    elif "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        bf16 = compiled("bf16")
    else:
        bf16 = "this CPU has no bf16 instructions (OpenVINO would emulate them, ~50x slower than its f32)"
    return ov.get_version().split("-")[0], [("f32", compiled("f32")), ("bf16", bf16)]


def other_engines(args, towers, files):
    """ONNX Runtime and OpenVINO on the same towers, when importable, and
    PyTorch on a bf16 copy of them: {engine:
    {"version", precision: {result keys..., "cosine_to_torch_f32": {...}}}} or
    {engine: {"skipped": why}}. With `files`, each also embeds them end to end
    (the result key "e2e"), decoded and resized as for PyTorch f32."""
    engines = [("onnxruntime", "onnxruntime", ort_engine), ("openvino", "openvino", openvino_engine),
               ("pytorch", "torch", torch_engine)]
    out = {}
    for key, module, make in engines:
        if args.device != "cpu" and key != "pytorch":
            out[key] = {"skipped": "measured on the CPU only"}
        elif args.isa_cap and key == "onnxruntime":
            out[key] = {"skipped": f"it cannot be capped at {args.isa_cap} as seer's kernels were (its figures "
                                   "would be the whole CPU's)"}
        elif importlib.util.find_spec(module) is None:
            out[key] = {"skipped": f"not installed in {sys.executable} (pip install {module})"}
        if "skipped" in out.get(key, {}):
            print(f"{key}: skipped, {out[key]['skipped']}", file=sys.stderr)
    wanted = [e for e in engines if e[0] not in out]
    if not wanted:
        return out
    # seer passes a folder it removes itself, even when this process is killed.
    scratch = (contextlib.nullcontext(args.scratch) if args.scratch
               else tempfile.TemporaryDirectory(prefix="seer-bench-onnx-"))
    with scratch as tmp:
        # Each runner is made from its tower's ONNX path; PyTorch only reads its name.
        paths = {tower.name: Path(tmp) / f"{tower.name}.onnx" for tower in towers}
        try:
            for tower in towers if any(key != "pytorch" for key, _, _ in wanted) else []:
                print(f"exporting the {tower.name} tower to ONNX...", file=sys.stderr)
                with torch.no_grad():
                    tower.export(paths[tower.name])
        except Exception as e:  # keep the PyTorch figures
            error = f"torch.onnx.export failed: {type(e).__name__}: {e}"
            print(error, file=sys.stderr)
            return {**out, **{key: {"error": error} for key, _, _ in wanted}}
        with torch.inference_mode():
            expected = {t.name: t.embed(t.cases[0][1]()).cpu() for t in towers}
        for key, _, make in wanted:
            try:
                version, precisions = make(args.threads, towers, args.isa_cap)
                out[key] = {"version": version}
                for precision, runner in precisions:
                    if isinstance(runner, str):  # why this precision is not measured here
                        out[key][precision] = {"skipped": runner}
                        print(f"{key} {precision}: skipped, {runner}", file=sys.stderr)
                        continue
                    out[key][precision] = engine_bench(args, key, precision, runner, towers, paths, expected,
                                                       files)
            except Exception as e:  # an engine that fails must not lose the PyTorch figures
                out[key] = {"error": f"{type(e).__name__}: {e}"}
                print(f"{key}: failed, {out[key]['error']}", file=sys.stderr)
    return out


def engine_bench(args, engine, precision, runner, towers, paths, expected, files):
    result = {"cosine_to_torch_f32": {}}
    for tower in towers:
        run, info = runner(paths[tower.name])
        result.update(info)
        if tower.name == "image" and files:
            # The same DataLoader pipeline as PyTorch f32's end to end, each
            # batch handed over as the engine takes its input.
            embed = run if engine == "pytorch" else lambda px: run(px.contiguous().numpy())
            result.update(end_to_end(args, torch.device(args.device), files, image_transform(), embed,
                                     label=f"{engine} {precision}"))
        for i, (keys, make_input, items) in enumerate(tower.cases):
            # PyTorch takes its tensors where they are (on a GPU too); the
            # others get host arrays, as a caller of theirs would hold them.
            feed = make_input if engine == "pytorch" else lambda: make_input().cpu().contiguous().numpy()
            rate = timed(lambda: run(feed()), items, args.iterations)
            node = result
            for k in keys[:-1]:
                node = node.setdefault(k, {})
            node[keys[-1]] = rate
            unit = "images" if tower.name == "image" else "texts"
            label = f"{engine} {precision}"
            print(f"{label:<16} {'/'.join(keys):<18}: {rate:8.2f} {unit}/s", file=sys.stderr)
            if i == 0:
                lo, mean = cosine_stats(run(feed()), expected[tower.name])
                result["cosine_to_torch_f32"][tower.name] = {"min": lo, "mean": mean, "n": items}
    used = result.get("inference_precision")
    if used and used != precision:
        print(f"{engine}: asked for {precision}, runs {used} on this CPU", file=sys.stderr)
    cos = ", ".join(f"{k} min {v['min']:.5f}" for k, v in result["cosine_to_torch_f32"].items())
    print(f"{engine} {precision} vs torch f32 cosine: {cos}", file=sys.stderr)
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-sizes", default="8,32")
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--images", default="../shared/data/imagenet-samples/images")
    ap.add_argument("--files", type=int, default=256, help="files end to end; the list repeats when shorter")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--scratch", help="a folder for the ONNX exports, removed by the caller "
                                      "(default: a temporary folder removed at exit)")
    ap.add_argument("--tokens", help="JSON list of token id lists (default: open_clip.tokenize)")
    ap.add_argument("--model", help="a DINOv2 or SigLIP folder (default: random CLIP ViT-B/32)")
    ap.add_argument("--isa-cap", choices=["avx2", "avx512"],
                    help="seer's kernels ran capped at this instruction set, and the caller capped PyTorch and "
                         "OpenVINO (ATEN_CPU_CAPABILITY, DNNL_/ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS): "
                         "ONNX Runtime, which has no cap, is skipped, and OpenVINO and PyTorch bf16 too when capped at "
                         "AVX2")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    if args.model:
        return family_bench(args, device)
    model = CLIPModel(CLIPConfig()).eval().to(device)  # the defaults are ViT-B/32
    out = {"torch": torch.__version__, "threads": args.threads, "device": args.device, "isa_cap": args.isa_cap,
           "image_model": {}}

    embed_image = lambda px, m=model: features(m.get_image_features(pixel_values=px))
    embed_text = lambda ids, m=model: features(m.get_text_features(input_ids=ids))
    towers = [Tower("image", "pixel_values", model, embed_image, torch.float32),
              Tower("text", "input_ids", model, embed_text, torch.long)]
    with torch.inference_mode():
        for b in [int(x) for x in args.batch_sizes.split(",")]:
            pixels = torch.randn(b, 3, 224, 224, device=device)
            towers[0].cases.append((("image_model", str(b)), lambda p=pixels: p, b))
            ips = timed(lambda: model.get_image_features(pixel_values=pixels), b, args.iterations)
            out["image_model"][str(b)] = ips
            print(f"torch image model-only   batch {b:>3}: {ips:8.2f} images/s", file=sys.stderr)

        tokens = token_tensor(args).to(device)
        longest = int((tokens != 0).sum(1).max())
        cases = [("text_context", tokens), ("text_longest", tokens[:, :longest])]
        # The other engines measure their agreement on the first case: unpadded.
        towers[1].cases = [((key,), lambda i=ids: i, len(tokens)) for key, ids in reversed(cases)]
        for key, ids in cases:
            tps = timed(lambda: model.get_text_features(input_ids=ids), len(tokens), args.iterations)
            out[key] = tps
            print(f"torch text {key:<13} batch {len(tokens):>3}: {tps:8.2f} texts/s", file=sys.stderr)

    files = image_files(args)
    if files:
        out.update(end_to_end(args, device, files, image_transform(),
                              lambda px: model.get_image_features(pixel_values=px)))
    out.update(other_engines(args, towers, files))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
