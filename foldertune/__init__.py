"""foldertune: fine-tune timm image classifiers on image folders with the Hugging Face stack."""

__version__ = "0.1.0"
