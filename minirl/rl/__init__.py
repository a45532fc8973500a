"""Post-training: the RL math (KL estimators, advantages, losses) and the trainers built on it."""
