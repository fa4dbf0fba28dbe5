"""Image comparison: PSNR, SSIM and maps, VGG feature-difference maps, ``compare``."""
