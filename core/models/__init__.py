"""Models: the backbones registry, the four regimes, device and precision, frozen-pass runtimes, inference."""
