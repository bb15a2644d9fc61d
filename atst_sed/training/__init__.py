"""Lightning modules and training utilities: pretraining, fine-tuning, distillation."""
