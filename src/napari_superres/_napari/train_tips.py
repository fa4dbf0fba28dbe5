"""Tooltips of the Train widget's controls (text only; :class:`.train_widget.TrainWidget` sets them)."""

from __future__ import annotations

#: Tooltip of each control, by the widget's attribute name.
TRAIN_TIPS: dict[str, str] = {
    "hr_combo": "High-resolution image layer (the target the network learns to produce).",
    "synth_check": "Train on high-res alone: each patch's low-res input is made by a randomized "
    "degradation (down-sampling, blur, noise).",
    "lr_combo": "Low-resolution acquisition of the same field (its size must divide the high-res "
    "size by the scale exactly).",
    "scale_combo": "Upscaling factor of the model when low-res is synthesized.",
    "example_combo": "Optional: a low-res acquisition (another field of view is fine) whose blur and noise "
    "the synthesized low-res should match (fitted when training starts). Empty: the "
    "generic randomized degradation.",
    "preset_combo": "psnr: L1 only (best PSNR, slightly smooth); perceptual: + L2, SSIM and VGG-16 "
    "features (sharper; needs the VGG-16 weights); gan: + adversarial loss after "
    "pixel pre-training.",
    "steps_spin": "Training steps (one batch each). Resume continues up to this number. "
    "0 with a time budget: train until the time is up.",
    "seconds_spin": "Time budget in seconds (validation included; 0: none): training stops at 'steps' "
    "or this time, whichever comes first, and the learning rate decays over it.",
    "init_combo": "builtin: fine-tune the built-in model of the scale (much further in the same time "
    "on a small set); none: a new network of the channels and blocks below (setting "
    "them chooses none).",
    "name_edit": "Name under which the model is registered (listed in the Upscale widget). Empty: "
    "'<high-res layer> x<scale>', numbered (2), (3)... when taken; a taken name you type "
    "asks before replacing that model.",
    "batch_spin": "Patches per step.",
    "patch_spin": "Edge of a high-res training patch in pixels (a multiple of the scale).",
    "lr_spin": "Adam learning rate (cosine schedule).",
    "val_spin": "Validate (PSNR/SSIM vs bicubic on a held-out region, preview layer) every N steps; 0: never.",
    "norm_combo": "Intensity normalization stored in the model: dtype range, or per-image "
    "percentiles 1-99.8 (for images using a small part of their dtype range).",
    "device_combo": "Where this widget trains (auto: CUDA, MPS, else CPU). Affects this widget only.",
    "channels_spin": "Feature channels of the network (capacity and cost).",
    "blocks_spin": "Residual blocks of the network (depth).",
    "upsampling_combo": "How the network upsamples: bilinear + conv (no checkerboard), pixelshuffle, transposed conv.",
    "checkpoint_edit": "Checkpoint file written during training and on Stop (empty: a temporary "
    "file kept while this widget is open).",
    "start_button": "Start a new run with these settings.",
    "stop_button": "Stop after the current step; a checkpoint is written and the model registered.",
    "resume_button": "Continue the checkpointed run up to 'steps'.",
    "save_button": "Write the last trained model to a .safetensors file.",
    "pair_label": "The training pair and its factor.",
    "validation_label": "Latest validation: PSNR/SSIM of the model and of bicubic on the held-out region.",
}

#: Tooltip of each loss-weight spin box (``term``: the loss term).
WEIGHT_TIP = "Weight of the {term} loss term (0: off); the preset fills these."

__all__ = ["TRAIN_TIPS", "WEIGHT_TIP"]
