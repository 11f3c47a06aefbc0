"""The image path: the same samplers on real photos (tensors ``(n, c, h, w)``, float32, model units [-1, 1]).

- :mod:`.operators`: image forward operators (``A``, ``A_adjoint``, ``pinv``) and the task table (``sr4``,
  ``inpaint-box``, ``inpaint-random``, ``blur-gauss``, ``blur-motion``, ``cs``, ``denoise``);
- :mod:`.data`: bundled photos (skimage, sklearn, matplotlib sample data) and image files, as model-unit tensors;
- :mod:`.metrics`: PSNR, SSIM and the sliced Wasserstein distance of Laplacian-pyramid patches (SWD);
- :mod:`.problem`: ``ImageInverseProblem(operator, sigma_y)`` and ``solve_image``;
- :mod:`.backbones`: denoisers behind the one interface (the exact mixture over a finite image set, diffusers
  ``UNet2DModel`` folders, ADM / guided-diffusion checkpoints, latent VAE + UNet backbones);
- :mod:`.spectral`: an exact stationary Gaussian prior, diagonal in Fourier, for circulant operators at any size;
- :mod:`.latent_solve`: LMAP-RPS and the other solvers in a VAE latent space, the decoder in the data term;
- :mod:`.restore`: the ``dptheory restore`` command.

Nothing here downloads weights or data: checkpoints load from a local path.
"""
