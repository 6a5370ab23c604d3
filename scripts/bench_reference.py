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

Every figure is one measurement of its own (`Plan`). By hand (with that venv;
open_clip tokenizes the prompts) it sets everything up, takes them all in turn
and prints one JSON object on stdout, progress on stderr. `seer bench
--reference /path/to/python` runs it with `--serve` (and the token ids it
embeds, `--tokens`): after set-up it prints one JSON line, {"ready": what set-up
learnt, "measurements": [{"path", "key"}...]}, then reads requests {"measure":
index}, one a line, and answers each with {"rate": items/s} or {"error": why},
until stdin closes. seer follows each of its own measurements with the same
key's measurements here at once, so a shared machine's swings from minute to
minute fall on both sides alike. Anything a library prints goes to stderr: stdout
carries only those lines.
"""
import argparse
import contextlib
import copy
import importlib.util
import json
import logging
import os
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


def family_plan(args, device, scratch):
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
    plan = Plan({"torch": torch.__version__, "threads": args.threads, "device": args.device,
                 "isa_cap": args.isa_cap, "model": args.model, "family": config.model_type, "image_model": {}})
    image_tower = Tower("image", "pixel_values", model, embed_image, torch.float32)
    towers = [image_tower]
    with torch.inference_mode():
        for b in [int(x) for x in args.batch_sizes.split(",")]:
            pixels = torch.randn(b, 3, size, size, device=device)
            image_tower.cases.append(((("image_model", str(b))), lambda p=pixels: p, b))
        if hasattr(model, "get_text_features"):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(args.model)

            def tokenize():
                return tokenizer(PROMPTS, padding="max_length", max_length=64, truncation=True,
                                 return_tensors="pt")["input_ids"].to(device)

            embed_text = lambda ids, m=model: features(m.get_text_features(input_ids=ids))
            # Tokenised inside the timed loop, as in seer.
            text_tower = Tower("text", "input_ids", model, embed_text, torch.long)
            text_tower.cases.append((("text",), tokenize, len(PROMPTS)))
            towers.append(text_tower)

    def transform(image):
        return processor(images=image, return_tensors="pt")["pixel_values"][0]

    return plan_towers(args, device, scratch, plan, towers, transform)


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
    return ips


def features(out):
    """transformers 5 returns a model output from get_*_features: the projected
    embedding is its pooler_output."""
    return out if torch.is_tensor(out) else out.pooler_output


def reported(rate, label, unit):
    print(f"{label}: {rate:8.2f} {unit}/s", file=sys.stderr)
    return rate


class Plan:
    """Every figure the reference measures, each one call of its own so that
    `seer bench` can interleave them with its own (`--serve`): `info` holds what
    set-up learnt (versions, skipped engines, each engine's cosine to PyTorch
    f32), `items` the measurements as (path in the result, measurement key,
    a function returning items/s). The key is the figure's path under an
    engine and precision ("image_model", "8"): seer's own figure of that name
    is what each is set against."""

    def __init__(self, info):
        self.info, self.items = info, []

    def add(self, path, measure, key=None):
        self.items.append((list(path), list(key or path), measure))

    def measure(self, index):
        with torch.inference_mode():
            return self.items[index][2]()

    def run_all(self):
        """Every measurement in turn: the whole result, as one object."""
        out = copy.deepcopy(self.info)
        for index, (path, _, _) in enumerate(self.items):
            try:
                rate = self.measure(index)
            except Exception as e:  # an engine that fails must not lose the other figures
                print(f"{'/'.join(path)}: failed, {type(e).__name__}: {e}", file=sys.stderr)
                continue
            node = out
            for k in path[:-1]:
                node = node.setdefault(k, {})
            node[path[-1]] = rate
        return out

    def serve(self, replies):
        """The `--serve` protocol (see the module's doc) on stdin and `replies`."""
        def send(message):
            replies.write(json.dumps(message) + "\n")
            replies.flush()

        send({"ready": self.info, "measurements": [{"path": p, "key": k} for p, k, _ in self.items]})
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                index = json.loads(line)["measure"]
                send({"rate": self.measure(index)})
            except Exception as e:
                send({"error": f"{type(e).__name__}: {e}"})


class Tower:
    """One embedding function and the inputs seer times it on: `cases` holds
    (result key path, input maker, items per call); the first case's input also
    measures agreement with PyTorch f32. `embed(x, m=model)` runs on `model`
    unless given another copy (PyTorch bf16)."""

    def __init__(self, name, input_name, model, embed, dtype):
        self.name, self.input_name, self.embed, self.dtype = name, input_name, embed, dtype
        self.model = model
        self.cases = []
        self.unit = "images" if name == "image" else "texts"

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
    copies = {}

    def bf16(path):
        tower = next(t for t in towers if t.name == Path(path).stem)
        key = id(tower.model)
        if key not in copies:
            copies[key] = copy.deepcopy(tower.model).to(torch.bfloat16)
        model = copies[key]

        def run(x):  # a tensor on the model's device (engine_setup), as PyTorch f32 is fed
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


def engine_plans(args, towers, files, plan, tmp):
    """ONNX Runtime and OpenVINO on the same towers, when importable, and
    PyTorch on a bf16 copy of them, set up and added to `plan`: `plan.info`
    gains {engine: {"version", precision: {"cosine_to_torch_f32": {...}}}} or
    {engine: {"skipped": why}}, and each precision's figures go under
    (engine, precision, key...). With `files`, each also embeds them end to end
    (the key "e2e"), decoded and resized as for PyTorch f32. The exports go to
    the folder `tmp`."""
    engines = [("onnxruntime", "onnxruntime", ort_engine), ("openvino", "openvino", openvino_engine),
               ("pytorch", "torch", torch_engine)]
    out = plan.info
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
        return
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
        out.update({key: {"error": error} for key, _, _ in wanted})
        return
    with torch.inference_mode():
        expected = {t.name: t.embed(t.cases[0][1]()).cpu() for t in towers}
    for key, _, make in wanted:
        try:
            version, precisions = make(args.threads, towers, args.isa_cap)
            info, items = {"version": version}, []
            for precision, runner in precisions:
                if isinstance(runner, str):  # why this precision is not measured here
                    info[precision] = {"skipped": runner}
                    print(f"{key} {precision}: skipped, {runner}", file=sys.stderr)
                    continue
                info[precision] = engine_setup(args, key, precision, runner, towers, paths, expected, files, items)
            # Added only once the whole engine is set up: one that fails must
            # not lose the PyTorch figures, nor leave half its own.
            out[key] = info
            for path, measure, measured_key in items:
                plan.add(path, measure, key=measured_key)
        except Exception as e:
            out[key] = {"error": f"{type(e).__name__}: {e}"}
            print(f"{key}: failed, {out[key]['error']}", file=sys.stderr)
    # The f32 engines first, so that those nearest in time to seer's figure
    # are the ones its f32 ratios are taken against (a stable sort: each
    # engine's order stays).
    names = {key for key, _, _ in engines}
    plan.items.sort(key=lambda item: item[0][0] in names and item[0][1] != "f32")


def engine_setup(args, engine, precision, runner, towers, paths, expected, files, items):
    """One engine in one precision: its runners made and checked against
    PyTorch f32 (cosine) now, its measurements appended to `items` as (path,
    function, key). Returns its info."""
    result = {"cosine_to_torch_f32": {}}
    label = f"{engine} {precision}"
    for tower in towers:
        run, info = runner(paths[tower.name])
        result.update(info)
        if tower.name == "image" and files:
            # The same DataLoader pipeline as PyTorch f32's end to end, each
            # batch handed over as the engine takes its input.
            embed = run if engine == "pytorch" else lambda px, run=run: run(px.contiguous().numpy())
            result["e2e_files"] = len(files)
            items.append(((engine, precision, "e2e"), lambda embed=embed: end_to_end(
                args, torch.device(args.device), files, image_transform(), embed, label=label), ("e2e",)))
        for i, (keys, make_input, count) in enumerate(tower.cases):
            # PyTorch takes its tensors where they are (on a GPU too); the
            # others get host arrays, as a caller of theirs would hold them.
            feed = make_input if engine == "pytorch" else lambda m=make_input: m().cpu().contiguous().numpy()
            items.append(((engine, precision, *keys), timed_case(args, label, run, feed, keys, count, tower.unit),
                          keys))
            if i == 0:
                with torch.inference_mode():
                    lo, mean = cosine_stats(run(feed()), expected[tower.name])
                result["cosine_to_torch_f32"][tower.name] = {"min": lo, "mean": mean, "n": count}
    used = result.get("inference_precision")
    if used and used != precision:
        print(f"{engine}: asked for {precision}, runs {used} on this CPU", file=sys.stderr)
    cos = ", ".join(f"{k} min {v['min']:.5f}" for k, v in result["cosine_to_torch_f32"].items())
    print(f"{label} vs torch f32 cosine: {cos}", file=sys.stderr)
    return result


def clip_plan(args, device, scratch):
    """Random-weight CLIP ViT-B/32 (transformers' defaults): images at each
    batch size, the token ids padded to 77 and to the longest, end to end."""
    model = CLIPModel(CLIPConfig()).eval().to(device)
    plan = Plan({"torch": torch.__version__, "threads": args.threads, "device": args.device,
                 "isa_cap": args.isa_cap, "image_model": {}})
    embed_image = lambda px, m=model: features(m.get_image_features(pixel_values=px))
    embed_text = lambda ids, m=model: features(m.get_text_features(input_ids=ids))
    towers = [Tower("image", "pixel_values", model, embed_image, torch.float32),
              Tower("text", "input_ids", model, embed_text, torch.long)]
    with torch.inference_mode():
        for b in [int(x) for x in args.batch_sizes.split(",")]:
            pixels = torch.randn(b, 3, 224, 224, device=device)
            towers[0].cases.append((("image_model", str(b)), lambda p=pixels: p, b))

        tokens = token_tensor(args).to(device)
        longest = int((tokens != 0).sum(1).max())
        cases = [("text_context", tokens), ("text_longest", tokens[:, :longest])]
        # The other engines measure their agreement on the first case: unpadded.
        towers[1].cases = [((key,), lambda i=ids: i, len(tokens)) for key, ids in reversed(cases)]
    return plan_towers(args, device, scratch, plan, towers, image_transform())


def plan_towers(args, device, scratch, plan, towers, transform):
    """PyTorch f32 on every case of the towers (the image tower first) and,
    with image files, end to end through `transform`; then the other
    engines (`engine_plans`). Returns `plan`."""
    for tower in towers:
        for keys, make_input, count in tower.cases:
            plan.add(keys, timed_case(args, "torch f32", tower.embed, make_input, keys, count, tower.unit))
    files = image_files(args)
    if files:
        plan.info["e2e_files"] = len(files)
        plan.add(("e2e",), lambda: end_to_end(args, device, files, transform, towers[0].embed))
    engine_plans(args, towers, files, plan, scratch)
    return plan


def timed_case(args, label, run, feed, keys, count, unit):
    """A measurement: `run` on `feed()`'s input, `count` items a call, in
    items/s, reported on stderr under `label` and `keys`."""
    return lambda: reported(timed(lambda: run(feed()), count, args.iterations),
                            f"{label:<16} {'/'.join(keys):<18}", unit)


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
    ap.add_argument("--serve", action="store_true",
                    help="set up, print what is to be measured, then measure one figure per request on stdin "
                         "(how seer bench runs it; see the module's doc)")
    args = ap.parse_args()
    # stdout is for the result (or the protocol) alone: whatever a library
    # prints, from Python or from C, goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    # seer passes a folder it removes itself, even when this process is killed.
    scratch = (contextlib.nullcontext(args.scratch) if args.scratch
               else tempfile.TemporaryDirectory(prefix="seer-bench-onnx-"))
    with scratch as tmp:
        plan = family_plan(args, device, tmp) if args.model else clip_plan(args, device, tmp)
        if args.serve:
            plan.serve(replies)
        else:
            replies.write(json.dumps(plan.run_all()) + "\n")
            replies.flush()


if __name__ == "__main__":
    main()
