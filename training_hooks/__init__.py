"""Training hooks: governance inside LeRobot, plain PyTorch and Ray Train loops."""
