"""The docs' pictures, copied from a demo run (``make docs-images``).

Each task page of the guide shows one picture of what the demo makes at that step. This copies
them from a finished ``isamap-demo --out DIR`` into ``docs/img/``, as palette PNGs (the demo's
pictures are flat colours and text, which 256 colours keep) scaled down until each is under
:data:`MAX_BYTES`, so the repository stays small.

Usage: ``python tools/docs_images.py DEMO_OUT [docs/img]``
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from PIL import Image

MAX_BYTES = 200_000
# docs/img name -> the demo output it is taken from
PICTURES: dict[str, str] = {
    "composite_rgb.png": "quicklooks/composite_rgb.png",
    "label.png": "quicklooks/label.png",
    "learning_curves.png": "model/train/learning_curves.png",
    "reliability.png": "model/evaluate/reliability.png",
    "class_map.png": "maps/2021-06/isa_2021-06_class.png",
    "change_map.png": "maps/change/isa_change_2019-06_2021-06.png",
    "series_area.png": "maps/series_area.png",
    "report.png": "assess/score/report.png",
}


def small_png(source: Path) -> bytes:
    """``source`` as a palette PNG of at most :data:`MAX_BYTES`, halving its size if needed."""
    image = Image.open(source).convert("RGBA")
    while True:
        palette = image.quantize(colors=256, method=Image.Quantize.FASTOCTREE)
        buffer = io.BytesIO()
        palette.save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= MAX_BYTES or min(image.size) < 64:
            return buffer.getvalue()
        image = image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS)


def main(argv: list[str]) -> int:
    if not argv or len(argv) > 2:
        print(__doc__.rsplit("Usage: ", 1)[1].strip(), file=sys.stderr)
        return 2
    demo, out = Path(argv[0]), Path(argv[1] if len(argv) > 1 else "docs/img")
    missing = [rel for rel in PICTURES.values() if not (demo / rel).is_file()]
    if missing:
        print(f"{demo} lacks {', '.join(missing)}: run isamap-demo --out {demo} first",
              file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    for name, rel in PICTURES.items():
        data = small_png(demo / rel)
        (out / name).write_bytes(data)
        print(f"{out / name}: {len(data) // 1000} KB from {rel}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
