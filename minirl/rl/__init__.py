"""Post-training: the RL math (KL estimators, advantages, losses) and the trainers built on it.

Array math runs on the active backend through `backend.get_array_module`; host-side
bookkeeping (scores from Python reward functions, metrics, shuffles) uses NumPy.
"""
