"""`hpcft plan`'s estimates before anything is queued: model shape, dataset size, memory per GPU, steps and time.
May import hpcft.core and hpcft.launcher."""
