"""The image path: the same samplers on real photos (tensors ``(n, c, h, w)``, float32, model units [-1, 1]).

Modules:

- :mod:`.operators`: image forward operators with the vector protocol (``A``, ``A_adjoint``, ``pinv``) and the
  task table (``sr4``, ``inpaint-box``, ``inpaint-random``, ``blur-gauss``, ``blur-motion``, ``cs``, ``denoise``);
- :mod:`.data`: bundled photos (skimage, sklearn, matplotlib sample data) and image files, as model-unit tensors;
- :mod:`.metrics`: PSNR, SSIM and the sliced Wasserstein distance of Laplacian-pyramid patches (SWD);
- :mod:`.problem`: ``ImageInverseProblem(operator, sigma_y)`` and ``solve_image``;
- :mod:`.backbones`: denoisers behind the one interface: the exact mixture over a finite image set, diffusers
  ``UNet2DModel`` folders, ADM / guided-diffusion checkpoints, and latent (VAE + UNet) backbones;
- :mod:`.spectral`: an exact stationary Gaussian image prior, diagonal in the Fourier basis, with a power law fitted
  to the bundled photos: exact posteriors, denoisers and optimal D-P curves at any size for circulant operators;
- :mod:`.latent`: LMAP-RPS and the other solvers in a VAE latent space, with the decoder inside the data term;
- :mod:`.restore`: the ``dptheory restore`` command.

Nothing here downloads weights or data: checkpoints load from a local path.
"""
