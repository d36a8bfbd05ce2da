"""Three learners over :class:`~.env.TradingEnv`, NumPy only, deterministic for a seed.

- ``q_learning``: a table over a discretised state (the sign of each lagged return, the position);
- ``dqn``: a one-hidden-layer MLP Q-function, experience replay and a target network (Adam);
- ``actor_critic``: a linear softmax policy and a linear state-value critic (one-step TD advantage).

Rewards are divided by the training window's bar volatility while learning (unit scale for the
function approximators); the evaluation uses the environment's raw rewards. A learned policy is a
:class:`Policy`: the algorithm, its arrays and the :class:`~.env.StateSpec`; acting is greedy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .env import StateSpec, TradingEnv

ALGOS = ("q_learning", "dqn", "actor_critic")
DEFAULTS = {
    "q_learning": {"alpha_min": 0.002, "gamma": 0.3, "eps_start": 1.0, "eps_end": 0.05},
    "dqn": {"hidden": 8, "lr": 0.005, "gamma": 0.1, "batch": 32, "buffer": 4096, "sync_every": 200,
            "train_every": 4, "eps_start": 1.0, "eps_end": 0.05},
    "actor_critic": {"lr_actor": 0.01, "lr_critic": 0.02, "gamma": 0.5, "entropy": 0.01},
}  # fmt: skip
# the arrays each algorithm's policy holds (the artifact loader checks exactly these)
ARRAYS = {"q_learning": ("q",), "dqn": ("w1", "b1", "w2", "b2"), "actor_critic": ("w_pi", "b_pi", "w_v", "b_v")}


def tabular_index(state: np.ndarray, n_lags: int, positions: tuple[int, ...]) -> int:
    """Sign bits of the lagged returns (columns ``n_lags .. 2*n_lags``) and the position's slot."""
    bits = 0
    for k in range(n_lags):
        if state[n_lags + k] > 0:
            bits |= 1 << k
    return bits * len(positions) + positions.index(int(state[-1]))


@dataclass
class Policy:
    algo: str
    positions: tuple[int, ...]
    spec: StateSpec
    arrays: dict[str, np.ndarray]
    params: dict = field(default_factory=dict)

    def values(self, state: np.ndarray) -> np.ndarray:
        """Q-values (q_learning, dqn) or action probabilities (actor_critic) for one state."""
        a = self.arrays
        if self.algo == "q_learning":
            return a["q"][tabular_index(state, self.spec.n_lags, self.positions)]
        if self.algo == "dqn":
            h = np.tanh(state @ a["w1"] + a["b1"])
            return h @ a["w2"] + a["b2"]
        z = state @ a["w_pi"] + a["b_pi"]
        e = np.exp(z - z.max())
        return e / e.sum()

    def act(self, state: np.ndarray) -> int:
        return int(np.argmax(self.values(state)))

    def confidence(self, values: np.ndarray) -> float:
        """In [0, 1]: the chosen action's probability margin (actor-critic) or a softmax of Q-value gaps."""
        v = np.asarray(values, dtype=np.float64)
        if self.algo != "actor_critic":
            e = np.exp((v - v.max()) * 4.0)
            v = e / e.sum()
        s = np.sort(v)
        return float(np.clip(s[-1] - (s[-2] if s.size > 1 else 0.0), 0.0, 1.0))


def _epsilon(p: dict, episode: int, episodes: int) -> float:
    frac = episode / max(episodes - 1, 1)
    return p["eps_start"] + (p["eps_end"] - p["eps_start"]) * frac


def train(
    algo: str,
    env: TradingEnv,
    spec: StateSpec,
    *,
    episodes: int = 20,
    seed: int = 0,
    params: dict | None = None,
    on_episode: Callable[[int, float], None] | None = None,
) -> tuple[Policy, list[float]]:
    """Train for ``episodes`` passes over the environment; returns the policy and each episode's
    total (raw) reward."""
    if algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}")
    p = {**DEFAULTS[algo], **(params or {})}
    rng = np.random.default_rng(seed)
    fn = {"q_learning": _q_learning, "dqn": _dqn, "actor_critic": _actor_critic}[algo]
    arrays, curve = fn(env, spec, p, episodes, rng, on_episode)
    return Policy(algo, env.positions, spec, arrays, {k: v for k, v in p.items()}), curve


def _q_learning(env, spec, p, episodes, rng, on_episode):
    n_a = env.n_actions
    q = np.zeros((2**spec.n_lags * n_a, n_a))
    visits = np.zeros_like(q)
    scale = 1.0 / spec.ret_scale
    curve = []
    for ep in range(episodes):
        eps = _epsilon(p, ep, episodes)
        s = env.reset()
        i = tabular_index(s, spec.n_lags, env.positions)
        total, done = 0.0, False
        while not done:
            a = int(rng.integers(n_a)) if rng.random() < eps else int(np.argmax(q[i]))
            s, r, done = env.step(a)
            total += r
            j = tabular_index(s, spec.n_lags, env.positions)
            target = r * scale + (0.0 if done else p["gamma"] * q[j].max())
            visits[i, a] += 1  # step size 1/n (a sample average) down to alpha_min: noisy rewards
            q[i, a] += max(1.0 / visits[i, a], p["alpha_min"]) * (target - q[i, a])
            i = j
        curve.append(total)
        if on_episode:
            on_episode(ep, total)
    return {"q": q}, curve


class _Adam:
    def __init__(self, shapes, lr):
        self.lr, self.t = lr, 0
        self.m = [np.zeros(s) for s in shapes]
        self.v = [np.zeros(s) for s in shapes]

    def step(self, params, grads):
        self.t += 1
        b1, b2 = 0.9, 0.999
        for k, (w, g) in enumerate(zip(params, grads, strict=True)):
            self.m[k] = b1 * self.m[k] + (1 - b1) * g
            self.v[k] = b2 * self.v[k] + (1 - b2) * g * g
            mh = self.m[k] / (1 - b1**self.t)
            vh = self.v[k] / (1 - b2**self.t)
            w -= self.lr * mh / (np.sqrt(vh) + 1e-8)


def _dqn(env, spec, p, episodes, rng, on_episode):
    d, n_a, h = env.state_dim, env.n_actions, int(p["hidden"])
    w1 = rng.normal(0, 1 / np.sqrt(d), (d, h))
    b1 = np.zeros(h)
    w2 = rng.normal(0, 1 / np.sqrt(h), (h, n_a))
    b2 = np.zeros(n_a)
    params = [w1, b1, w2, b2]
    target = [x.copy() for x in params]
    opt = _Adam([x.shape for x in params], p["lr"])
    cap, batch = int(p["buffer"]), int(p["batch"])
    S, A, R, S2, D = np.zeros((cap, d)), np.zeros(cap, dtype=np.int64), np.zeros(cap), np.zeros((cap, d)), np.zeros(cap)
    size = ptr = steps = 0
    scale = 1.0 / spec.ret_scale
    curve = []
    for ep in range(episodes):
        eps = _epsilon(p, ep, episodes)
        s = env.reset()
        total, done = 0.0, False
        while not done:
            if rng.random() < eps:
                a = int(rng.integers(n_a))
            else:
                a = int(np.argmax(np.tanh(s @ w1 + b1) @ w2 + b2))
            s2, r, done = env.step(a)
            total += r
            S[ptr], A[ptr], R[ptr], S2[ptr], D[ptr] = s, a, r * scale, s2, float(done)
            ptr, size = (ptr + 1) % cap, min(size + 1, cap)
            s = s2
            steps += 1
            if size >= batch and steps % int(p["train_every"]) == 0:
                idx = rng.integers(0, size, batch)
                tw1, tb1, tw2, tb2 = target
                q_next = np.tanh(S2[idx] @ tw1 + tb1) @ tw2 + tb2
                y = R[idx] + p["gamma"] * (1 - D[idx]) * q_next.max(axis=1)
                hid = np.tanh(S[idx] @ w1 + b1)
                q = hid @ w2 + b2
                err = np.zeros_like(q)
                rows = np.arange(batch)
                err[rows, A[idx]] = np.clip(q[rows, A[idx]] - y, -1.0, 1.0) / batch  # Huber gradient
                g_w2 = hid.T @ err
                g_b2 = err.sum(axis=0)
                dh = (err @ w2.T) * (1 - hid**2)
                g_w1 = S[idx].T @ dh
                g_b1 = dh.sum(axis=0)
                opt.step(params, [g_w1, g_b1, g_w2, g_b2])
            if steps % int(p["sync_every"]) == 0:
                target = [x.copy() for x in params]
        curve.append(total)
        if on_episode:
            on_episode(ep, total)
    return {"w1": w1, "b1": b1, "w2": w2, "b2": b2}, curve


def _actor_critic(env, spec, p, episodes, rng, on_episode):
    d, n_a = env.state_dim, env.n_actions
    w_pi, b_pi = np.zeros((d, n_a)), np.zeros(n_a)
    w_v, b_v = np.zeros(d), np.zeros(1)
    scale = 1.0 / spec.ret_scale
    curve = []
    for ep in range(episodes):
        s = env.reset()
        total, done = 0.0, False
        while not done:
            z = s @ w_pi + b_pi
            e = np.exp(z - z.max())
            pi = e / e.sum()
            a = int(rng.choice(n_a, p=pi))
            s2, r, done = env.step(a)
            total += r
            v = s @ w_v + b_v[0]
            v2 = 0.0 if done else s2 @ w_v + b_v[0]
            delta = float(np.clip(r * scale + p["gamma"] * v2 - v, -5.0, 5.0))
            w_v += p["lr_critic"] * delta * s
            b_v[0] += p["lr_critic"] * delta
            grad = -pi
            grad[a] += 1.0  # d log pi(a) / d logits
            ent = -pi * (np.log(pi + 1e-12) + (-(pi * np.log(pi + 1e-12)).sum()))  # d entropy / d logits
            g = delta * grad + p["entropy"] * ent
            w_pi += p["lr_actor"] * np.outer(s, g)
            b_pi += p["lr_actor"] * g
            s = s2
        curve.append(total)
        if on_episode:
            on_episode(ep, total)
    return {"w_pi": w_pi, "b_pi": b_pi, "w_v": w_v, "b_v": b_v}, curve


def run_policy(policy: Policy, env: TradingEnv) -> tuple[np.ndarray, np.ndarray]:
    """Greedy pass from flat: the per-step net rewards and positions held."""
    s = env.reset()
    rewards, positions, done = [], [], False
    while not done:
        a = policy.act(s)
        s, r, done = env.step(a)
        rewards.append(r)
        positions.append(env.pos)
    return np.asarray(rewards), np.asarray(positions)
