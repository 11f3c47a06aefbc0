"""Image data: spec parsing, shapes, ranges, resizing, patches, writing, and error messages.

Oracles: the raw files read by skimage.io / sklearn (values agree to float32 round-off, 1e-6), and a PNG
round trip (exact on the uint8 grid).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dptheory.images import data as D


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    "spec, native",
    [
        ("skimage:astronaut", (512, 512)),
        ("skimage:camera", (512, 512)),
        ("skimage:coffee", (400, 600)),
        ("matplotlib:grace_hopper.jpg", (600, 512)),
        ("sklearn:digits", (8, 8)),
        ("sklearn:digits:5", (8, 8)),
    ],
)
def test_load_shapes_and_range(spec, native):
    x = D.load_image(spec)
    assert x.shape == (1, 3, *native) and x.dtype == torch.float32
    assert float(x.min()) >= -1 and float(x.max()) <= 1 and float(x.max() - x.min()) > 0.5
    y = D.load_image(spec, 16)
    assert y.shape == (1, 3, 16, 16) and float(y.min()) >= -1 and float(y.max()) <= 1
    assert D.load_image(spec, (12, 20), channels=1).shape == (1, 1, 12, 20)


def test_values_match_raw_files():
    import skimage.data
    from sklearn.datasets import load_digits

    x = D.load_image("skimage:astronaut")
    ref = skimage.data.astronaut().astype(np.float64) / 255 * 2 - 1
    np.testing.assert_allclose(x[0].numpy().transpose(1, 2, 0), ref, atol=1e-6)
    cam = D.load_image("skimage:camera")
    assert torch.equal(cam[:, 0], cam[:, 2])  # grayscale repeated over 3 channels
    np.testing.assert_allclose(cam[0, 0].numpy(), skimage.data.camera() / 255 * 2 - 1, atol=1e-6)
    d = D.load_image("sklearn:digits:7")[0, 0].numpy()
    np.testing.assert_allclose(d, load_digits().images[7] / 16 * 2 - 1, atol=1e-6)


def test_crop_then_resize():
    full = D.load_image("skimage:coffee")  # 400 x 600: centre square crop is columns 100..500
    box = D.load_image("skimage:coffee", crop=(0, 100, 400, 400))
    assert torch.equal(box, full[..., :, 100:500])
    assert torch.equal(D.load_image("skimage:coffee", crop="center"), box)
    small = D.load_image("skimage:coffee", 50)
    # antialiased downscale by 8: close to the 8 x 8 block means of the crop (smooth photo)
    blocks = box.reshape(1, 3, 50, 8, 50, 8).mean(dim=(3, 5))
    assert float((small - blocks).abs().mean()) < 0.03
    wide = D.load_image("skimage:camera", (10, 20))  # 512 x 512 to 1:2: the centred crop is rows 128..384
    assert wide.shape == (1, 3, 10, 20)
    assert torch.equal(wide, D.load_image("skimage:camera", (10, 20), crop=(128, 0, 256, 512)))


def test_bundled_photos_and_patches():
    photos = D.bundled_photos()
    assert "skimage:astronaut" in photos and "matplotlib:grace_hopper.jpg" in photos
    p = D.photo_patches(8, 6, _g(1), exclude=("astronaut",), photos=("skimage:astronaut", "skimage:camera"))
    assert p.shape == (6, 3, 8, 8) and p.dtype == torch.float32
    assert torch.equal(p[:, 0], p[:, 1])  # only the (grayscale) camera remains
    q = D.photo_patches(8, 6, _g(1), exclude=("astronaut",), photos=("skimage:astronaut", "skimage:camera"))
    assert torch.equal(p, q)
    r = D.photo_patches(4, 3, _g(2), photos=("sklearn:digits",), channels=1)
    assert r.shape == (3, 1, 4, 4)
    with pytest.raises(ValueError, match="no photos left"):
        D.photo_patches(8, 2, _g(), exclude="camera", photos=("camera",))
    with pytest.raises(ValueError, match="exceeds photo"):
        D.photo_patches(9, 2, _g(), photos=("sklearn:digits",))


def test_to_uint8_and_save_png_round_trip(tmp_path):
    from PIL import Image

    x = D.load_image("sklearn:digits:3", 8)
    u = D.to_uint8(x)
    assert u.shape == (1, 8, 8, 3) and u.dtype == np.uint8
    assert D.to_uint8(torch.tensor([[[-1.0, 0.0, 1.0, 3.0]]])).ravel().tolist() == [0, 128, 255, 255]
    path = D.save_png(x, tmp_path / "digit.png")
    np.testing.assert_array_equal(np.asarray(Image.open(path)), u[0])
    back = D.load_image(path)
    assert torch.allclose(back, x, atol=1 / 127.5)  # one uint8 step
    D.save_png(x[:, :1], tmp_path / "gray.png")
    assert D.load_image(tmp_path / "gray.png", channels=1).shape == (1, 1, 8, 8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digit.png", "gray.png"]  # no temp files left


def test_save_png_failure_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match="one image"):
        D.save_png(torch.zeros(2, 3, 4, 4), tmp_path / "a.png")
    with pytest.raises(ValueError, match="NaN"):
        D.save_png(torch.full((3, 4, 4), float("nan")), tmp_path / "b.png")
    assert list(tmp_path.iterdir()) == []


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        D.load_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="unknown skimage image 'nope'"):
        D.load_image("skimage:nope")
    with pytest.raises(ValueError, match="unknown matplotlib sample image"):
        D.load_image("matplotlib:msft.csv")
    with pytest.raises(ValueError, match="unknown sklearn image"):
        D.load_image("sklearn:iris")
    with pytest.raises(ValueError, match="out of range"):
        D.load_image("sklearn:digits:99999")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read"):
        D.load_image(bad)
    with pytest.raises(ValueError, match="channels"):
        D.load_image("skimage:camera", channels=2)
    with pytest.raises(ValueError, match="does not fit"):
        D.load_image("sklearn:digits", crop=(0, 0, 9, 9))
    with pytest.raises(TypeError, match="spec"):
        D.load_image(3)
