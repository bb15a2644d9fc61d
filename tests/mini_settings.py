"""recipes/mini shortened for the suite (every stage, one epoch of two batches): the settings of the
session's mini run (tests/conftest.py) and of the training tests that run the recipe themselves. The
command line's data.batch_size / epoch_length also replace the recipe's finetune_clip overrides."""

MINI_FAST = [
    "data.batch_size=8", "data.num_workers=0", "data.epoch_length=2", "data.val_batch_size=12",
    "trainer.max_epochs=1", "trainer.log_every_n_steps=1", "trainer.check_val_every_n_epoch=1",
]
