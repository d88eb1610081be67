"""``lightfusion finetune``: fine-tune a preset on the user's registered pairs, from the command line.

Reads ``ANATOMICAL:FUNCTIONAL`` files and ``--pairs DIR`` folders
(:mod:`napari_lightfusion.pair_data`), runs :func:`napari_lightfusion.finetune.finetune`
and writes the weights with a sidecar through a temporary file. It prints
which base it started from and why (``--from auto``: the held-out scores
of every preset), which loss it trained with and why, and whether the run
beat the base: if not, it says "kept the base: ..." and ``--out`` holds the
base's weights unchanged (``--save-as`` then saves nothing).
"""

from __future__ import annotations

from pathlib import Path


def add_finetune(sub):
    p = sub.add_parser("finetune", help="fine-tune a preset on your own registered pairs (minutes on a CPU)")
    p.add_argument("pairs", nargs="*", help="ANATOMICAL:FUNCTIONAL image files (PNG, TIFF stacks)")
    p.add_argument(
        "--pairs",
        dest="folders",
        type=Path,
        action="append",
        default=[],
        help="a folder DIR/MRI/* with DIR/CT|PET|SPECT/* of the same names (repeatable)",
    )
    p.add_argument(
        "--from",
        dest="base",
        default="auto",
        help="preset to start from (bundled, custom or a .pt file); auto (the default): the preset "
        "that scores best on your held-out pairs",
    )
    p.add_argument(
        "--loss",
        default="auto",
        help="preset whose training loss (weights, balance loss, default b) to use; auto (the default): "
        "that of the preset that scores best on your held-out pairs",
    )
    p.add_argument("--out", type=Path, required=True, help="weight file to write (.pt, with its .json sidecar)")
    p.add_argument("--minutes", type=float, default=None, help="time budget (default 2, or none with --steps)")
    p.add_argument("--steps", type=int, default=None, help="stop after this many steps")
    p.add_argument(
        "--lr", type=float, default=None, help="peak Adam learning rate (default: the recipe's, 5e-3, annealed to 0)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-as", default=None, help="also save the result as a custom preset of this name")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.set_defaults(run=run_finetune)


def run_finetune(args):
    from dataclasses import replace

    import torch
    from tqdm import tqdm

    from .finetune import AUTO, FinetuneConfig, finetune
    from .pair_data import folder_pairs, parse_pair, read_pairs
    from .training import held_out_score
    from .weights import check_preset_name, custom_presets, preset_path, save_custom_preset, save_weights_atomic, sha256

    if args.out.suffix != ".pt":
        raise ValueError(f"--out {args.out} must be a .pt file (its sidecar goes beside it as .json)")
    for preset in (args.base, args.loss):
        if preset != AUTO and args.out.resolve() == preset_path(preset).resolve():
            raise ValueError(f"--out {args.out} would overwrite the weights it starts from")
    if args.save_as is not None:
        name = check_preset_name(args.save_as)
        if name in custom_presets():
            raise ValueError(f"a custom preset named {name!r} exists already; remove it or choose another name")
    paths = [parse_pair(text) for text in args.pairs]
    for folder in args.folders:
        paths += folder_pairs(folder)
    if not paths:
        raise ValueError("give pairs as ANATOMICAL:FUNCTIONAL files or --pairs DIR")
    if args.threads:
        torch.set_num_threads(args.threads)
    minutes = args.minutes if args.minutes is not None else (None if args.steps else 2.0)
    config = FinetuneConfig(steps=args.steps, minutes=minutes, seed=args.seed)
    if args.lr is not None:
        config = replace(config, lr=args.lr)
    pairs = read_pairs(paths)

    bar = tqdm(total=args.steps or round(60 * minutes), unit="step" if args.steps else "s", desc="finetune")

    def report(update):
        bar.update((update.step if args.steps else int(update.seconds)) - bar.n)
        if update.validation is not None:
            bar.set_postfix(score=f"{held_out_score(update.validation):.3f}", best=f"{held_out_score(update.best):.3f}")

    try:
        result = finetune(pairs, args.base, loss=args.loss, config=config, device=args.device, progress=report)
    finally:
        bar.close()
    hashes = {path: sha256(path) for pair in paths for path in pair}
    sidecar = result.sidecar(
        pairs=[{"anatomical": a, "functional": f, "sha256": [hashes[a], hashes[f]]} for a, f in paths]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_weights_atomic(result.model, args.out, sidecar)
    for line in result.report():
        print(line)
    if not result.improved:
        print(f"wrote {args.out}: the weights of '{result.base}', unchanged")
        if args.save_as is not None:
            print(f"not saved as custom preset {args.save_as!r}: it would be a copy of '{result.base}'")
        return
    print(f"wrote {args.out} (best at step {result.best_step})")
    if args.save_as is not None:
        print(f"saved as custom preset {args.save_as!r}: {save_custom_preset(args.save_as, args.out)}")
