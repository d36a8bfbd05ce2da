"""Reinforcement-learning trading agents (NumPy only): an environment over bars and features
(:mod:`.env`), tabular Q-learning, a small DQN and an actor-critic (:mod:`.agents`), their
parameters as a safe artifact (:mod:`.artifact`) and an out-of-sample walk-forward evaluation
against buy & hold and flat (:mod:`.evaluate`)."""
