"""Networks and model files: SRNet, discriminators, VGG-16 features, safetensors model files."""
