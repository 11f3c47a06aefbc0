"""Bundled photos and image files as model-unit tensors ``(1, c, H, W)``, float32 in [-1, 1].

Specs understood by :func:`load_image`:

- ``"skimage:NAME"``: an image shipped inside scikit-image (``astronaut``, ``camera``, ``coffee``,
  ``chelsea``/``cat``, ``rocket``, ...; see :data:`SKIMAGE_NAMES`; nothing is downloaded);
- ``"sklearn:digits"`` or ``"sklearn:digits:I"``: the I-th 8 x 8 digit of ``sklearn.datasets.load_digits``
  (values 0..16 scaled to [0, 1]); ``"sklearn:china.jpg"``, ``"sklearn:flower.jpg"``: the sample photos of
  ``sklearn.datasets.load_sample_images``;
- ``"matplotlib:NAME"``: a sample image shipped with matplotlib (e.g. ``grace_hopper.jpg``);
- any other string or path: a PNG/JPEG file read with PIL.

Pixel values ``u`` in [0, 1] map to model units ``x = 2 u - 1``. numpy is used only here, at the file edge.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "SKIMAGE_NAMES",
    "load_image",
    "bundled_photos",
    "photo_patches",
    "to_uint8",
    "save_png",
]

# skimage.data images whose files ship with scikit-image (no pooch download); name -> file
SKIMAGE_NAMES: dict[str, str] = {
    "astronaut": "astronaut.png",
    "camera": "camera.png",
    "coffee": "coffee.png",
    "chelsea": "chelsea.png",
    "cat": "chelsea.png",
    "rocket": "rocket.jpg",
    "coins": "coins.png",
    "moon": "moon.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png",
    "page": "page.png",
    "text": "text.png",
    "brick": "brick.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "retina": "retina.jpg",
    "motorcycle_left": "motorcycle_left.png",
    "motorcycle_right": "motorcycle_right.png",
    "cell": "cell.png",
    "microaneurysms": "microaneurysms.png",
}
# natural photographs used by bundled_photos / photo_patches (textures and documents left out)
_PHOTOS = (
    "skimage:astronaut",
    "skimage:camera",
    "skimage:coffee",
    "skimage:chelsea",
    "skimage:rocket",
    "skimage:hubble_deep_field",
    "skimage:immunohistochemistry",
    "skimage:moon",
    "skimage:coins",
    "skimage:motorcycle_left",
    "matplotlib:grace_hopper.jpg",
)
_MPL_IMAGE_EXT = (".png", ".jpg", ".jpeg")


MAX_IMAGE_PIXELS = 100_000_000
"""The largest image (width x height) :func:`load_image` reads, checked from the file's header before decoding:
a decompression bomb (a small file declaring a huge image) is refused at once instead of filling the memory."""
_REDUCE_ABOVE = 16_000_000
"""Files above this many pixels are cropped and box-reduced by PIL (in C, on 8-bit data) before any float array
is made, so that a 9000 x 9000 photo loads in seconds, not minutes, and in ~0.3 GB, not 4 GB."""


@contextmanager
def _open_image(path: Path):
    """``PIL.Image.open`` with one-line ``ValueError``s: a folder, an unreadable file, or more than
    :data:`MAX_IMAGE_PIXELS` (decompression bombs included)."""
    from PIL import Image

    if path.is_dir():
        raise IsADirectoryError(f"image path {str(path)!r} is a folder; expected a PNG or JPEG file (or a spec "
                                "skimage:NAME, sklearn:digits[:I], matplotlib:NAME)")
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {str(path)!r} (or an unknown spec; see load_image)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own cap below applies
            im = Image.open(path)
    except Image.DecompressionBombError as err:
        raise ValueError(f"{str(path)!r} is refused: {err}") from None
    except (Image.UnidentifiedImageError, SyntaxError, EOFError, OSError, ValueError) as err:
        raise ValueError(f"cannot read {str(path)!r} as an image (PNG/JPEG expected): {err}") from None
    with im:
        w, h = im.size
        if w * h > MAX_IMAGE_PIXELS:
            raise ValueError(f"{str(path)!r} declares {w} x {h} = {w * h / 1e6:.0f} megapixels, more than the "
                             f"{MAX_IMAGE_PIXELS / 1e6:.0f} dptheory reads (a decompression bomb, or reduce it first)")
        yield im


def _pixels(im, path: Path) -> np.ndarray:
    """Decode ``im`` to ``(H, W)`` or ``(H, W, 3)`` float64 in [0, 1]."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im.load()
            if im.mode in ("1", "L", "I", "I;16", "F"):
                arr = np.asarray(im.convert("F"), dtype=np.float64)
                hi = 255.0 if im.mode in ("1", "L") else max(float(arr.max()), 1.0)
                return np.clip(arr / hi, 0.0, 1.0)
            return np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
    except (SyntaxError, EOFError, OSError, ValueError) as err:
        raise ValueError(f"cannot read {str(path)!r} as an image (truncated or corrupt): {err}") from None


def _read_file(path) -> np.ndarray:
    path = Path(path)
    with _open_image(path) as im:
        return _pixels(im, path)


def _read_file_reduced(path: Path, hw, crop) -> np.ndarray | None:
    """For a file above :data:`_REDUCE_ABOVE` pixels: the box of ``crop`` (native pixels; default the centred
    box of the target aspect) reduced by PIL by an integer factor that keeps at least twice the target size, as
    an array for :func:`_crop_resize`. ``None`` for smaller files (read at full size and cached instead)."""
    with _open_image(path) as im:
        w, h = im.size
        if w * h <= _REDUCE_ABOVE:
            return None
        top, left, ch, cw = _box(h, w, hw, crop)
        k = int(min(ch / hw[0], cw / hw[1]) // 2)
        if k < 2:
            return None
        try:
            if im.mode not in ("1", "L", "I", "I;16", "F", "RGB"):
                im = im.convert("RGB")
            elif im.mode in ("1", "I", "I;16"):
                im = im.convert("F") if im.mode != "1" else im.convert("L")
            reduced = im.reduce(k, box=(left, top, left + cw, top + ch))
        except (SyntaxError, EOFError, OSError, ValueError) as err:
            raise ValueError(f"cannot read {str(path)!r} as an image (truncated or corrupt): {err}") from None
        return _pixels(reduced, path)


def _skimage_data_dir() -> Path:
    """``skimage/data`` found without importing scikit-image (its import is slow)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("scikit-image is not installed (pip install scikit-image)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _sklearn_images_dir() -> Path:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("scikit-learn is not installed (pip install scikit-learn)")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "images"


def _mpl_sample_dir() -> Path:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("matplotlib is not installed (pip install matplotlib)")
    return Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "sample_data"


@functools.lru_cache(maxsize=16)
def _read_spec(spec: str) -> np.ndarray:
    """Pixels in [0, 1], ``(H, W)`` or ``(H, W, 3)``, float64 (cached, read-only)."""
    if spec.startswith("skimage:"):
        name = spec.split(":", 1)[1]
        if name not in SKIMAGE_NAMES:
            raise ValueError(f"unknown skimage image {name!r}; expected one of {sorted(SKIMAGE_NAMES)}")
        arr = _read_file(_skimage_data_dir() / SKIMAGE_NAMES[name])
    elif spec.startswith("sklearn:") and spec.lower().endswith(_MPL_IMAGE_EXT):
        name = spec.split(":", 1)[1]
        path = _sklearn_images_dir() / name
        if not path.is_file():
            avail = sorted(p.name for p in _sklearn_images_dir().glob("*") if p.suffix.lower() in _MPL_IMAGE_EXT)
            raise ValueError(f"unknown sklearn sample image {name!r}; expected one of {avail}")
        arr = _read_file(path)
    elif spec.startswith("sklearn:"):
        parts = spec.split(":")
        if parts[1] != "digits" or len(parts) > 3:
            raise ValueError(f"unknown sklearn image {spec!r}; expected 'sklearn:digits' or 'sklearn:digits:I'")
        from sklearn.datasets import load_digits

        images = load_digits().images
        try:
            i = int(parts[2]) if len(parts) == 3 else 0
        except ValueError as err:
            raise ValueError(f"digit index in {spec!r} must be an int") from err
        if not 0 <= i < len(images):
            raise ValueError(f"digit index {i} out of range [0, {len(images)})")
        arr = images[i].astype(np.float64) / 16.0
    elif spec.startswith("matplotlib:"):
        name = spec.split(":", 1)[1]
        path = _mpl_sample_dir() / name
        if not name.lower().endswith(_MPL_IMAGE_EXT) or not path.is_file():
            avail = sorted(p.name for p in _mpl_sample_dir().glob("*") if p.suffix.lower() in _MPL_IMAGE_EXT)
            raise ValueError(f"unknown matplotlib sample image {name!r}; expected one of {avail}")
        arr = _read_file(path)
    else:
        arr = _read_file(spec)
    arr.setflags(write=False)
    return arr


def _target(size):
    """``size`` as ``(H, W)`` or ``None``."""
    if size is None:
        return None
    hw = (size, size) if isinstance(size, int | np.integer) else tuple(int(s) for s in size)
    if len(hw) != 2 or min(hw) <= 0:
        raise ValueError(f"size must be a positive int or (H, W), got {size!r}")
    if hw[0] * hw[1] > MAX_IMAGE_PIXELS:
        raise ValueError(f"size {hw[0]} x {hw[1]} exceeds the {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels dptheory makes")
    return hw


def _box(h: int, w: int, hw, crop) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` cut from an ``h x w`` image: ``crop`` itself (checked), or the largest
    centred box of the target aspect for ``crop`` None/"center"."""
    if crop == "center" or (crop is None and hw is not None):
        aspect = 1.0 if hw is None else hw[0] / hw[1]  # target H / W: a square for an int size
        ch, cw = (h, round(h / aspect)) if h / w <= aspect else (round(w * aspect), w)
        ch, cw = min(max(ch, 1), h), min(max(cw, 1), w)
        return (h - ch) // 2, (w - cw) // 2, ch, cw
    if crop is None:
        return 0, 0, h, w
    try:
        top, left, ch, cw = (int(v) for v in crop)
    except (TypeError, ValueError) as err:
        raise TypeError(f"crop must be None, 'center' or (top, left, height, width), got {crop!r}") from err
    if ch <= 0 or cw <= 0 or top < 0 or left < 0 or top + ch > h or left + cw > w:
        raise ValueError(f"crop {(top, left, ch, cw)} does not fit an image of size {h}x{w}")
    return top, left, ch, cw


def _crop_resize(arr: np.ndarray, size, crop) -> np.ndarray:
    h, w = arr.shape[:2]
    hw = _target(size)
    if crop is not None or hw is not None:
        top, left, ch, cw = _box(h, w, hw, crop)
        arr = arr[top : top + ch, left : left + cw]
    if hw is not None:
        if hw != arr.shape[:2]:
            from skimage.transform import resize

            aa = hw[0] < arr.shape[0] or hw[1] < arr.shape[1]
            arr = resize(arr, hw + arr.shape[2:], order=1, anti_aliasing=aa, mode="reflect")
    return arr


def load_image(spec, size=None, *, crop=None, channels: int = 3) -> torch.Tensor:
    """Load an image as a ``(1, c, H, W)`` float32 tensor in [-1, 1] (``x = 2 u - 1``, ``u`` in [0, 1]).

    Args:
        spec: ``"skimage:NAME"``, ``"sklearn:digits[:I]"``, ``"matplotlib:NAME"`` or a PNG/JPEG path.
        size: ``None`` (native size), an int ``S`` (``S x S``) or ``(H, W)``. Resizing is bilinear with
            Gaussian anti-aliasing when downscaling (``skimage.transform.resize``).
        crop: ``None`` (when ``size`` is given, the largest centred crop with the target aspect ratio: a
            square for an int size; none otherwise), ``"center"`` (the same; a square without ``size``) or a
            box ``(top, left, height, width)`` in native pixels; applied before resizing.
        channels: 3 (grayscale repeated) or 1 (colour converted with ``skimage.color.rgb2gray``, ITU-R 601).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for an unknown name.

    Examples:
        >>> load_image("sklearn:digits:0", 16).shape
        torch.Size([1, 3, 16, 16])
    """
    if not isinstance(spec, str | os.PathLike):
        raise TypeError(f"spec must be a string or path, got {type(spec).__name__}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    arr = None
    hw = _target(size)
    if hw is not None and not str(spec).startswith(("skimage:", "sklearn:", "matplotlib:")):
        arr = _read_file_reduced(Path(spec), hw, crop)  # a large file: cropped and reduced by PIL first
        if arr is not None and crop not in (None, "center"):
            crop = (0, 0, *arr.shape[:2])  # the user's box is cut already: resize all of it
    if arr is None:
        arr = _read_spec(str(spec))
    if arr.ndim == 3 and channels == 1:
        from skimage.color import rgb2gray

        arr = rgb2gray(arr)
    arr = _crop_resize(arr, size, crop)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], channels, axis=-1)
    x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32))
    return (x * 2 - 1).clamp_(-1, 1).unsqueeze(0)


def _spec_file(spec: str) -> Path | None:
    """The file behind a bundled spec (``None`` if its package is not installed)."""
    kind, name = spec.split(":", 1)
    try:
        if kind == "skimage":
            return _skimage_data_dir() / SKIMAGE_NAMES[name]
        if kind == "sklearn":
            return _sklearn_images_dir() / name
        return _mpl_sample_dir() / name
    except ImportError:
        return None


def bundled_photos() -> tuple[str, ...]:
    """The specs of the natural photographs shipped with the installed packages (no download), e.g.
    ``"skimage:astronaut"``, ``"matplotlib:grace_hopper.jpg"``; a photo whose file is missing is left out."""
    return tuple(s for s in _PHOTOS if (f := _spec_file(s)) is not None and f.is_file())


def _canonical(name: str) -> str:
    return name if ":" in name else f"skimage:{name}"


def photo_patches(
    size: int,
    n: int,
    generator: torch.Generator | None = None,
    exclude=(),
    *,
    channels: int = 3,
    photos=None,
    photo_size: int | None = None,
) -> torch.Tensor:
    """``n`` random ``size x size`` crops from the bundled photos, ``(n, c, size, size)`` float32 in [-1, 1].

    Each patch picks a photo uniformly (from ``photos``, default :func:`bundled_photos`, minus ``exclude``;
    a bare name means ``skimage:NAME``) and then a uniform top-left corner, all drawn from ``generator``.
    ``photo_size`` first resizes each photo (centred square) to ``photo_size``, so a patch covers a larger
    part of the scene.
    """
    size, n = int(size), int(n)
    if size <= 0 or n < 0:
        raise ValueError(f"size must be > 0 and n >= 0, got size={size}, n={n}")
    excl = {_canonical(e) for e in ((exclude,) if isinstance(exclude, str) else exclude)}
    pool = [p for p in (bundled_photos() if photos is None else map(_canonical, photos)) if p not in excl]
    if not pool:
        raise ValueError("no photos left to sample from (check photos and exclude)")
    imgs = [load_image(p, photo_size, channels=channels)[0] for p in pool]
    for p, im in zip(pool, imgs, strict=True):
        if min(im.shape[-2:]) < size:
            raise ValueError(f"patch size {size} exceeds photo {p} of size {tuple(im.shape[-2:])}")
    which = torch.randint(len(pool), (n,), generator=generator)
    out = torch.empty(n, channels, size, size, dtype=torch.float32)
    for i in range(n):
        im = imgs[int(which[i])]
        top = int(torch.randint(im.shape[-2] - size + 1, (), generator=generator))
        left = int(torch.randint(im.shape[-1] - size + 1, (), generator=generator))
        out[i] = im[:, top : top + size, left : left + size]
    return out


def to_uint8(x) -> np.ndarray:
    """Model units [-1, 1] to uint8 pixels: ``round((clip(x, -1, 1) + 1) * 127.5)``.

    ``x (n, c, h, w)`` -> ``(n, h, w, c)``; ``(c, h, w)`` -> ``(h, w, c)`` (numpy, for writing files).
    """
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    if x.ndim not in (3, 4):
        raise ValueError(f"x must have shape (c, h, w) or (n, c, h, w), got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or Inf")
    u = ((x.detach().double().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
    return np.moveaxis(u, -3, -1)


def save_png(x, path) -> Path:
    """Write one image ``(c, h, w)`` or ``(1, c, h, w)`` (c = 1 or 3, model units) as a PNG at ``path``.

    The file is written to a temporary file in the same folder and renamed, so a failure never leaves a
    partial file. Returns the path.
    """
    from PIL import Image

    u = to_uint8(x)
    if u.ndim == 4:
        if u.shape[0] != 1:
            raise ValueError(f"save_png writes one image; got a batch of {u.shape[0]}")
        u = u[0]
    if u.shape[-1] not in (1, 3):
        raise ValueError(f"x must have 1 or 3 channels, got {u.shape[-1]}")
    from .._atomic import atomic_path

    path = Path(path)
    im = Image.fromarray(u[..., 0] if u.shape[-1] == 1 else u)
    with atomic_path(path) as tmp:  # mode 0o666 less the umask, like any file the user writes
        im.save(tmp, format="PNG")
    return path
