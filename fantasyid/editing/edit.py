"""Move facial traits by the smallest change of FLAME's shape coefficients, holding the other traits.

FLAME's identity space is linear: the neutral mesh is ``v(β) = T̄ + S·β`` with ``β`` (DECA: 100 coefficients) of
roughly unit prior variance. A trait ``f(v)`` (:mod:`fantasyid.editing.traits`) is a smooth function of a few surface
points, so with ``f(β) = f(v(β))`` an edit asks for::

    minimise ‖β − β₀‖²   subject to   f_r(β) = target_r  (requested traits)
                                        f_h(β) = f_h(β₀)   (every other trait is held)

solved in three stages (:meth:`ShapeEditor._solve`), all with autograd Jacobians:

1. Gauss–Newton with the minimal-norm step: at ``β_k``, with ``J = ∂f/∂β`` and the residual ``b = goal − f(β_k)``,
   the next iterate is ``β₀ + J⁺ (b + J (β_k − β₀))``, the closest point to ``β₀`` on the linearised constraints
   (damped by halving while it would increase the residual). For traits linear in the vertices this is exact in
   one step; for distances and angles it approaches the minimal norm only linearly where the constraint surface
   is curved.
2. After :data:`MIN_NORM_STEPS` such steps, plain Gauss–Newton steps (the smallest move from ``β_k``) remove the
   remaining residual quadratically.
3. Newton's method on the optimality conditions (SQP with the exact Hessian of the Lagrangian) refines the point
   to the minimal norm; it is kept only when it ends feasible, within the bound and closer to ``β₀``.

The minimal norm in β is the prior's Mahalanobis distance: the most probable face that has the requested traits.

Plausibility, in prior standard deviations: every coefficient stays within ``|β_i| ≤ max(bound, |β₀_i|)``
(default bound 3; a coefficient the input already has beyond it may move inwards, not further out), and the edit
itself is at most ``‖β − β₀‖ ≤ max_change`` (default 5: two random faces of the prior are about ``√(2n)`` ≈ 14 apart
for n = 100, so the edited face stays recognisably the same person). Each Gauss–Newton step is the minimal-norm
change within the box (:func:`min_norm_in_box`), so coefficients that reach the bound stay there and the others make
up the change; as the result is the smallest change that reaches the request, a result beyond ``max_change`` means
that no edit within it exists. Either way the request is an :class:`~fantasyid.errors.InputError` that names the
trait and the range reachable within the limits.

Modes: traits are always measured on the neutral (shape-only) mesh, in FLAME's canonical orientation. ``paper``
vertices are that mesh; ``released`` vertices re-apply the input's expression and pose to the edited shape (FLAME
with LBS), so the edit changes the shape part and keeps the rest.

Edit syntax (:func:`parse_edit`): ``+8%`` / ``-5%`` relative change; ``+2mm``, ``-0.5cm``, ``+3deg`` or a plain
signed number (in the trait's unit) absolute change; ``+0.5sd`` change in prior standard deviations of the trait
(``‖∂f/∂β‖`` at the input: the change one unit of ‖β‖ buys when nothing is held); ``=150mm`` / ``=150`` a target value.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch

from fantasyid.errors import InputError
from fantasyid.face.flame import FlameLayer, decode_vertices

from .traits import TRAIT_NAMES, TRAITS, TraitMeter, get_trait

__all__ = [
    "DEFAULT_BOUND",
    "DEFAULT_MAX_CHANGE",
    "EditResult",
    "ShapeEditor",
    "ShapeState",
    "TraitEdit",
    "min_norm_in_box",
    "parse_assignment",
    "parse_edit",
]

#: Default bound on |β_i| (FLAME's shape coefficients have unit prior variance).
DEFAULT_BOUND = 3.0
#: Default bound on ‖β − β₀‖, the size of an edit in prior standard deviations.
DEFAULT_MAX_CHANGE = 5.0
#: Gauss–Newton stops when every trait is within this of its goal (mm or degrees).
SOLVE_TOLERANCE = 1e-7
#: A solve that ends farther than this from a goal (mm or degrees) has failed.
ACCEPT_TOLERANCE = 1e-3
MAX_ITERATIONS = 60
#: Gauss–Newton steps towards the minimal-norm solution before the residual is polished away from where they end.
MIN_NORM_STEPS = 25
#: Newton steps on the optimality conditions after Gauss–Newton (:meth:`ShapeEditor._refine`).
REFINE_STEPS = 15

_BOUND_HINT = (
    "ask for less, or raise --max-change / --bound (in prior standard deviations: two random faces are about {:.0f} "
    "apart)"
)


# ----------------------------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True)
class TraitEdit:
    """One requested trait change. ``kind``: ``relative`` (value in %), ``change`` (in the trait's unit), ``sd``
    (in prior standard deviations) or ``target`` (the value itself, in the trait's unit)."""

    trait: str
    kind: str
    value: float
    text: str  #: as the user wrote it

    def goal(self, current: float, sd: float) -> float:
        """The target value of the trait, from its current value and prior standard deviation."""
        if self.kind == "relative":
            return current * (1.0 + self.value / 100.0)
        if self.kind == "change":
            return current + self.value
        if self.kind == "sd":
            return current + self.value * sd
        return self.value

    def __str__(self) -> str:
        return f"{self.trait} {self.text}"


_EDIT = re.compile(
    r"^\s*(?P<eq>=)?\s*(?P<sign>[+-])?\s*(?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?)\s*"
    r"(?P<unit>%|mm|cm|deg|°|sd)?\s*$",
    re.IGNORECASE,
)


def parse_edit(trait: str, text: str) -> TraitEdit:
    """Read one trait request (see the module docstring for the syntax); a one-line error when unreadable."""
    spec = get_trait(trait)
    example = "+2mm" if spec.unit == "mm" else "+3deg"
    match = _EDIT.match(str(text))
    if match is None:
        raise InputError(f"cannot read {spec.option} '{text}': write a change such as +8%, {example} or +0.5sd, "
                         f"or a target such as ={'150mm' if spec.unit == 'mm' else '40deg'}")  # fmt: skip
    eq, sign, unit = match["eq"], match["sign"] or "", (match["unit"] or "").lower()
    value = float(sign + match["number"])
    if not math.isfinite(value):
        raise InputError(f"{spec.option} '{text}' is not a finite number")
    if not eq and not sign:
        target = "" if unit in ("%", "sd") else f", or set a target with ={text.strip()}"
        raise InputError(f"{spec.option} '{text}': give a change its sign (+{text.strip()} or -{text.strip()}){target}")
    if unit in ("%", "sd"):
        if eq:
            raise InputError(f"{spec.option} '{text}': a target is a value in {spec.unit}, not in {unit}")
        return TraitEdit(spec.name, "relative" if unit == "%" else "sd", value, text.strip())
    if unit in ("mm", "cm") and spec.unit != "mm" or unit in ("deg", "°") and spec.unit != "deg":
        raise InputError(f"{spec.option} '{text}': {spec.name} is measured in {spec.unit}, not {unit}")
    if unit == "cm":
        value *= 10.0
    return TraitEdit(spec.name, "target" if eq else "change", value, text.strip())


def parse_assignment(text: str) -> TraitEdit:
    """Read ``TRAIT=CHANGE`` (e.g. ``chin_length=+3mm``, ``face_width==150mm``)."""
    name, sep, change = str(text).partition("=")
    if not sep or not name.strip():
        raise InputError(f"cannot read --edit '{text}': write TRAIT=CHANGE, e.g. chin_length=+3mm",
                         hint=f"traits: {', '.join(TRAIT_NAMES)}")  # fmt: skip
    return parse_edit(name.strip(), change)


# ----------------------------------------------------------------------------------------------------------------
# States and results


@dataclass
class ShapeState:
    """FLAME codes of one face and the vertices they decode to in ``mode``."""

    betas: np.ndarray  #: (n_shape,) float32
    expression: np.ndarray  #: (n_exp,) float32 (zeros in the paper mode)
    pose: np.ndarray  #: (6,) float32 global rotation + jaw, axis-angle (zeros in the paper mode)
    mode: str  #: "paper" or "released"
    vertices: np.ndarray  #: (V, 3) float32, what generation uses


@dataclass
class EditResult:
    """An edit's input and output shapes and the traits before and after (in :data:`TRAITS` order)."""

    before: ShapeState
    after: ShapeState
    edits: tuple[TraitEdit, ...]
    traits_before: np.ndarray  #: (T,) float64
    traits_after: np.ndarray  #: (T,) float64
    targets: np.ndarray  #: (T,) float64, NaN for traits that were held
    bound: float
    max_change: float = DEFAULT_MAX_CHANGE
    iterations: int = 0
    landmarks: str = ""  #: where the trait landmarks came from

    trait_names: tuple[str, ...] = TRAIT_NAMES
    trait_units: tuple[str, ...] = tuple(trait.unit for trait in TRAITS)

    @property
    def changed(self) -> bool:
        return not np.array_equal(self.before.betas, self.after.betas)

    @property
    def at_bound(self) -> int:
        """How many coefficients the edit moved onto the bound ``±bound`` (from inside it)."""
        before = np.abs(self.before.betas.astype(np.float64))
        after = np.abs(self.after.betas.astype(np.float64))
        return int(np.sum((before < self.bound - 1e-5) & (after >= self.bound - 1e-5)))

    @property
    def coefficient_change(self) -> float:
        """‖β − β₀‖: the edit's cost in prior standard deviations."""
        return float(np.linalg.norm(self.after.betas.astype(np.float64) - self.before.betas.astype(np.float64)))


# ----------------------------------------------------------------------------------------------------------------
# The editor


class ShapeEditor:
    """Trait edits on one FLAME model.

    Args:
        flame: the FLAME layer that decodes the shapes (its ``n_shape`` coefficients are edited).
        meter: where and how traits are measured; default: :meth:`TraitMeter.for_template` with ``landmarks``.
        landmarks: FLAME's landmark embedding file, if any (else the geometric fallback).
        bound: plausible range of every coefficient, ``|β_i| ≤ bound`` (see the module docstring).
        max_change: the largest edit, ``‖β − β₀‖ ≤ max_change``.
    """

    def __init__(
        self,
        flame: FlameLayer,
        meter: TraitMeter | None = None,
        *,
        landmarks: str | None = None,
        bound: float = DEFAULT_BOUND,
        max_change: float = DEFAULT_MAX_CHANGE,
    ):
        if not bound > 0 or not max_change > 0:
            raise InputError(f"--bound and --max-change must be positive, got {bound} and {max_change}")
        self.flame = flame
        self.bound = float(bound)
        self.max_change = float(max_change)
        template = flame.v_template.detach().double().cpu()  # (V, 3)
        directions = flame.shapedirs[:, :, : flame.n_shape].detach().double().cpu()  # (V, 3, n)
        faces = flame.faces.detach().cpu().numpy()
        self.faces = faces
        self.meter = meter or TraitMeter.for_template(template.numpy(), faces, landmarks)
        # surface points and head centre are linear in β: precompute them once
        weights = torch.from_numpy(self.meter.weights)  # (P, V)
        self._points0 = weights @ template  # (P, 3)
        self._points_dirs = torch.einsum("pv,vkn->pkn", weights, directions)  # (P, 3, n)
        self._centre0 = template.mean(dim=0)  # (3,)
        self._centre_dirs = directions.mean(dim=0)  # (3, n)

    @property
    def n_shape(self) -> int:
        return int(self.flame.n_shape)

    # ------------------------------------------------------------------ measuring
    def _traits(self, betas: torch.Tensor) -> torch.Tensor:
        """Traits (T,) of the neutral mesh for float64 coefficients (n,)."""
        points = self._points0 + self._points_dirs @ betas  # (P, 3)
        centre = self._centre0 + self._centre_dirs @ betas  # (3,)
        return TraitMeter.measure_points(points, centre)

    def _jacobian(self, betas: torch.Tensor) -> torch.Tensor:
        return torch.autograd.functional.jacobian(self._traits, betas, vectorize=True)  # (T, n)

    def measure(self, betas: np.ndarray) -> np.ndarray:
        """Every trait (T,) of the neutral mesh of ``betas`` (n,)."""
        return self._traits(self._as_betas(betas)).numpy()

    def surface_points(self, betas: np.ndarray) -> np.ndarray:
        """The 68 landmarks and 2 mid-cheek points (70, 3) of the neutral mesh of ``betas``."""
        return (self._points0 + self._points_dirs @ self._as_betas(betas)).numpy()

    def _as_betas(self, betas: np.ndarray) -> torch.Tensor:
        array = np.asarray(betas, dtype=np.float64).reshape(-1)
        if array.shape != (self.n_shape,):
            raise InputError(f"expected {self.n_shape} FLAME shape coefficients, got {array.size}")
        return torch.from_numpy(array)

    # ------------------------------------------------------------------ states
    @torch.no_grad()
    def decode(self, betas: np.ndarray, expression: np.ndarray, pose: np.ndarray, mode: str) -> np.ndarray:
        """Vertices (V, 3) float32 of the codes in ``mode`` (see :func:`fantasyid.face.flame.decode_vertices`)."""
        reference = self.flame.v_template

        def batch(array: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.asarray(array, dtype=np.float32).reshape(1, -1), device=reference.device)

        vertices = decode_vertices(self.flame, batch(betas), batch(expression), batch(pose), mode=mode)
        return vertices[0].float().cpu().numpy()

    def state(
        self, betas: np.ndarray, expression: np.ndarray | None = None, pose: np.ndarray | None = None,
        mode: str = "paper",
    ) -> ShapeState:  # fmt: skip
        """A :class:`ShapeState` from DECA-style codes; the paper mode sets expression and pose to zero."""
        if mode not in ("paper", "released"):
            raise InputError(f"unknown shape mode {mode!r}; use 'paper' or 'released'")
        betas = np.asarray(betas, dtype=np.float32).reshape(-1)
        self._as_betas(betas)
        n_exp = int(self.flame.n_exp)
        if expression is None:
            expression = np.zeros(n_exp, np.float32)
        expression = np.asarray(expression, np.float32).reshape(-1)
        pose = np.zeros(6, np.float32) if pose is None else np.asarray(pose, np.float32).reshape(-1)
        if expression.shape != (n_exp,) or pose.shape != (6,):
            raise InputError(f"expected {n_exp} expression and 6 pose values, got {expression.size} and {pose.size}")
        if mode == "paper":
            expression, pose = np.zeros_like(expression), np.zeros_like(pose)
        return ShapeState(betas, expression, pose, mode, self.decode(betas, expression, pose, mode))

    # ------------------------------------------------------------------ editing
    def edit(self, state: ShapeState, edits: list[TraitEdit] | tuple[TraitEdit, ...]) -> EditResult:
        """Apply ``edits`` to ``state`` (see the module docstring). No change (no edits, or edits of zero) returns
        the input's coefficients and vertices unchanged."""
        edits = tuple(edits)
        names = [edit.trait for edit in edits]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise InputError(f"{repeated[0]} is requested more than once")
        beta0 = self._as_betas(state.betas)
        values0 = self._traits(beta0).numpy()
        jacobian0 = self._jacobian(beta0).numpy()  # (T, n)
        index = {name: i for i, name in enumerate(TRAIT_NAMES)}
        goal = values0.copy()
        targets = np.full(len(TRAITS), np.nan)
        for edit in edits:
            i = index[get_trait(edit.trait).name]
            goal[i] = targets[i] = edit.goal(float(values0[i]), float(np.linalg.norm(jacobian0[i])))
            self._check_goal(edit, goal[i])

        result = EditResult(
            before=state, after=state, edits=edits, traits_before=values0, traits_after=values0, targets=targets,
            bound=self.bound, max_change=self.max_change, landmarks=self.meter.source,
        )
        if np.array_equal(goal, values0):
            return result  # nothing to move: the input, exactly

        beta, iterations = self._solve(beta0, goal, jacobian0, edits)
        betas = beta.numpy().astype(np.float32)
        after = ShapeState(betas, state.expression, state.pose, state.mode,
                           self.decode(betas, state.expression, state.pose, state.mode))  # fmt: skip
        result.after = after
        result.traits_after = self.measure(betas)
        result.iterations = iterations
        return result

    def _check_goal(self, edit: TraitEdit, goal: float) -> None:
        trait = get_trait(edit.trait)
        if not math.isfinite(goal):
            raise InputError(f"{trait.option} {edit.text} gives no finite target")
        if trait.lower is not None and goal <= trait.lower or trait.upper is not None and goal >= trait.upper:
            if trait.upper is not None:
                limits = f"between {trait.lower:g} and {trait.upper:g}"
            else:
                limits = f"above {trait.lower:g}"
            raise InputError(f"{trait.option} {edit.text} asks for {goal:.2f} {trait.unit}; "
                             f"{trait.name} must stay {limits} {trait.unit}")  # fmt: skip

    def _solve(
        self, beta0: torch.Tensor, goal: np.ndarray, jacobian0: np.ndarray, edits: tuple[TraitEdit, ...]
    ) -> tuple[torch.Tensor, int]:
        """Minimal-norm Gauss–Newton within the bound, then Newton refinement (module docstring); returns β and the
        iterations used."""
        singular = np.linalg.svd(jacobian0, compute_uv=False)
        if len(singular) < len(goal) or singular[-1] <= 1e-9 * singular[0]:
            raise InputError(
                f"this shape model cannot move the traits independently (its {self.n_shape} coefficients do not "
                f"span {len(goal)} independent trait changes)"
            )
        start = beta0.numpy()
        limit = np.maximum(self.bound, np.abs(start))
        goal_t = torch.from_numpy(goal)
        beta, iterations = self._gauss_newton(beta0, beta0, goal_t, limit, MIN_NORM_STEPS, MAX_ITERATIONS)
        if beta is None:
            raise self._range_error(start, limit, goal, jacobian0, edits)
        refined, extra = self._refine(beta, beta0, goal_t, limit)
        beta, iterations = (refined, iterations + extra) if refined is not None else (beta, iterations)
        reached = self._traits(beta).numpy()
        miss = np.abs(reached - goal)
        if not np.all(np.isfinite(reached)) or miss.max() > ACCEPT_TOLERANCE:
            linear = np.linalg.lstsq(jacobian0, goal - self._traits(beta0).numpy(), rcond=None)[0]
            if np.linalg.norm(linear) > self.max_change:  # a request that far is past the limits anyway
                raise self._range_error(start, limit, goal, jacobian0, edits)
            worst = int(np.nanargmax(np.where(np.isfinite(miss), miss, np.inf)))
            what = ", ".join(str(edit) for edit in edits)
            raise InputError(f"could not reach the edit ({what}): {TRAIT_NAMES[worst]} ends {miss[worst]:.3g} "
                             f"{TRAITS[worst].unit} from its goal while the others are held",
                             hint="ask for a smaller change")  # fmt: skip
        if float(torch.linalg.vector_norm(beta - beta0)) > self.max_change + 1e-9:
            raise self._range_error(start, limit, goal, jacobian0, edits)
        return beta, iterations

    def _gauss_newton(
        self, beta: torch.Tensor, beta0: torch.Tensor, goal: torch.Tensor, limit: np.ndarray, min_norm_steps: int,
        max_steps: int,
    ) -> tuple[torch.Tensor | None, int]:  # fmt: skip
        """Gauss–Newton from ``beta`` towards ``f = goal`` within ``|β| ≤ limit``: ``min_norm_steps`` steps to the
        point closest to β₀ on the linearised constraints, then steps of least size. ``None`` when the linearised
        constraints cannot be met within the box."""
        start = beta0.numpy()
        low, high = -limit - start, limit - start  # the box for β − β₀ (it contains 0)
        residual = goal - self._traits(beta)  # (T,)
        steps = 0
        for steps in range(1, max_steps + 1):
            if residual.abs().max() <= SOLVE_TOLERANCE:
                return beta, steps - 1
            jacobian = self._jacobian(beta).numpy()  # (T, n)
            offset = beta.numpy() - start
            if steps <= min_norm_steps:
                step = min_norm_in_box(jacobian, residual.numpy() + jacobian @ offset, low, high)
                target = None if step is None else beta0 + torch.from_numpy(step)
            else:
                step = min_norm_in_box(jacobian, residual.numpy(), low - offset, high - offset)
                target = None if step is None else beta + torch.from_numpy(step)
            if target is None:
                return None, steps
            # damped: the whole way unless that makes the residual worse (the box is convex and holds both ends)
            size = 1.0
            for _ in range(12):
                candidate = beta + size * (target - beta)
                candidate_residual = goal - self._traits(candidate)
                if candidate_residual.norm() < residual.norm():
                    break
                size /= 2.0
            beta, residual = candidate, candidate_residual
        return beta, steps

    def _refine(
        self, beta: torch.Tensor, beta0: torch.Tensor, goal: torch.Tensor, limit: np.ndarray
    ) -> tuple[torch.Tensor | None, int]:
        """Newton's method on the optimality conditions (SQP with the exact Hessian of the Lagrangian
        ``½‖β − β₀‖² − λ·(f(β) − goal)``) from a feasible ``beta`` that has no coefficient on the bound.

        Gauss–Newton leaves out the constraints' curvature and so approaches the minimal norm only linearly; this
        converges quadratically near the solution. Far from it the step is kept safe: the Hessian is shifted until it
        is positive definite on the constraints' tangent space, and the step is halved until the ℓ1 merit
        ``½‖β − β₀‖² + ρ‖f(β) − goal‖₁`` decreases. Returns ``None`` (keep ``beta``) when a step would leave the box
        or the end point is not closer to β₀ than ``beta``.
        """
        start = beta0.numpy()
        if np.any(np.abs(beta.numpy()) >= limit - 1e-6):
            return None, 0
        count, size = len(goal), len(start)

        def merit(point: torch.Tensor, penalty: float) -> float:
            offset = point.numpy() - start
            return 0.5 * float(offset @ offset) + penalty * float((goal - self._traits(point)).abs().sum())

        current, steps = beta, 0
        for steps in range(1, REFINE_STEPS + 1):
            jacobian = self._jacobian(current).numpy()  # (T, n)
            offset = current.numpy() - start
            multipliers = np.linalg.lstsq(jacobian.T, offset, rcond=None)[0]  # (T,): offset = Jᵀλ at the optimum
            weights = torch.from_numpy(multipliers)
            curvature = torch.autograd.functional.hessian(
                lambda b: weights @ self._traits(b), current, vectorize=True
            ).numpy()  # (n, n)
            hessian = np.eye(size) - curvature  # Hessian of the Lagrangian
            null = np.linalg.svd(jacobian)[2][count:].T  # (n, n − T) basis of the tangent space
            lowest = float(np.linalg.eigvalsh(null.T @ hessian @ null).min())
            if lowest < 0.1:
                hessian += (0.1 - lowest) * np.eye(size)
            residual = (goal - self._traits(current)).numpy()
            system = np.block([[hessian, -jacobian.T], [jacobian, np.zeros((count, count))]])
            step = torch.from_numpy(np.linalg.solve(system, np.concatenate([-offset, residual]))[:size])
            if float(step.abs().max()) <= 1e-10:
                break
            penalty = 2.0 * float(np.abs(multipliers).max()) + 1.0
            before, scale = merit(current, penalty), 1.0
            for _ in range(20):
                candidate = current + scale * step
                if merit(candidate, penalty) < before:
                    break
                scale /= 2.0
            else:
                break
            if np.any(np.abs(candidate.numpy()) > limit):
                return None, steps
            current = candidate
        polished, extra = self._gauss_newton(current, beta0, goal, limit, 0, 10)
        if polished is None or (goal - self._traits(polished)).abs().max() > SOLVE_TOLERANCE:
            return None, steps
        if torch.linalg.vector_norm(polished - beta0) > torch.linalg.vector_norm(beta - beta0) + 1e-9:
            return None, steps
        return polished, steps + extra

    def _range_error(
        self, start: np.ndarray, limit: np.ndarray, goal: np.ndarray, jacobian0: np.ndarray,
        edits: tuple[TraitEdit, ...],
    ) -> InputError:  # fmt: skip
        """The one-line error of a request past the limits, with what is reachable with the traits linearised at
        the input and the other traits held: linear programs for the box, the minimal-norm change for ``max_change``
        (so the range is about right, not exact, for nonlinear traits)."""
        linprog = _linprog()
        values0 = self._traits(torch.from_numpy(start)).numpy()
        index = {name: i for i, name in enumerate(TRAIT_NAMES)}
        requested = [index[edit.trait] for edit in edits]
        held = [i for i in range(len(TRAITS)) if i not in requested]
        bounds = list(zip(-limit - start, limit - start))
        where = f"the plausible range (|β_i| ≤ {self.bound:g}, ‖Δβ‖ ≤ {self.max_change:g})"
        hint = _BOUND_HINT.format(math.sqrt(2 * len(start)))
        if len(edits) == 1:
            i, edit, trait = requested[0], edits[0], TRAITS[requested[0]]
            ends = []
            for sign in (1.0, -1.0):  # minimise then maximise J_i·d subject to J_held·d = 0 within the box
                solution = linprog(sign * jacobian0[i], A_eq=jacobian0[held], b_eq=np.zeros(len(held)),
                                   bounds=bounds, method="highs")  # fmt: skip
                ends.append(values0[i] + (jacobian0[i] @ solution.x if solution.status == 0 else 0.0))
            current = values0[i]
            # the minimal-norm change per unit of this trait with the others held, and how far max_change takes it
            per_unit = float(np.linalg.norm(np.linalg.lstsq(jacobian0, np.eye(len(goal))[i], rcond=None)[0]))
            reach = self.max_change / per_unit
            low, high = max(ends[0], current - reach), min(ends[1], current + reach)
            percent = ""
            if current > 0:
                percent = f" ({100 * (low / current - 1):+.1f}% to {100 * (high / current - 1):+.1f}%)"
            return InputError(
                f"{trait.option} {edit.text} (→ {goal[i]:.2f} {trait.unit}) goes past {where}: holding the other "
                f"traits, {trait.name} reaches about {low:.2f} to {high:.2f} {trait.unit}{percent}",
                hint=hint,
            )
        # the largest fraction s of the whole request that fits: maximise s, J_req·d = s·Δ, J_held·d = 0
        change = goal[requested] - values0[requested]
        count = len(start)
        equality = np.zeros((len(TRAITS), count + 1))
        equality[:, :count] = jacobian0[requested + held]
        equality[: len(requested), count] = -change
        cost = np.zeros(count + 1)
        cost[count] = -1.0
        solution = linprog(cost, A_eq=equality, b_eq=np.zeros(len(TRAITS)), bounds=bounds + [(0.0, 1.0)],
                           method="highs")  # fmt: skip
        fraction = float(solution.x[count]) if solution.status == 0 else 0.0
        whole = np.zeros(len(TRAITS))
        whole[: len(requested)] = change
        needed = float(np.linalg.norm(np.linalg.lstsq(jacobian0[requested + held], whole, rcond=None)[0]))
        fraction = min(fraction, self.max_change / needed if needed > 0 else 1.0)
        reachable = ", ".join(
            f"{TRAIT_NAMES[i]} {values0[i] + fraction * delta:.2f} {TRAITS[i].unit}"
            for i, delta in zip(requested, change)
        )
        return InputError(
            f"the edit ({', '.join(str(edit) for edit in edits)}) goes past {where}: about {fraction:.0%} of it "
            f"fits while the other traits are held ({reachable})",
            hint=hint,
        )


def _linprog():
    from scipy.optimize import linprog

    return linprog


def min_norm_in_box(
    jacobian: np.ndarray, rhs: np.ndarray, low: np.ndarray, high: np.ndarray, tolerance: float = 1e-10
) -> np.ndarray | None:
    """``argmin ‖d‖²`` subject to ``J d = rhs`` and ``low ≤ d ≤ high`` (with ``low ≤ 0 ≤ high``); ``None`` when no
    ``d`` satisfies both.

    The unconstrained minimal-norm solution ``J⁺ rhs`` when it lies in the box; otherwise the dual problem: for
    multipliers μ the minimiser over the box is ``d(μ) = clip(Jᵀμ, low, high)`` (the objective is separable), and μ
    maximises the concave dual ``q(μ) = Σ ½d² − d·Jᵀμ + μ·rhs`` whose gradient is the residual ``rhs − J d(μ)``.
    Semismooth Newton with the free coordinates' ``J_F J_Fᵀ`` and a backtracking line search; an infeasible
    request makes ``q`` unbounded, seen as no convergence.
    """
    scale = max(1.0, float(np.abs(rhs).max()))
    direct = np.linalg.lstsq(jacobian, rhs, rcond=None)[0]
    if np.all(direct >= low) and np.all(direct <= high) and np.abs(jacobian @ direct - rhs).max() <= tolerance * scale:
        return direct

    def dual(mu: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        g = jacobian.T @ mu
        d = np.clip(g, low, high)
        return float(0.5 * d @ d - d @ g + mu @ rhs), d, g, rhs - jacobian @ d

    mu = np.linalg.lstsq(jacobian @ jacobian.T, rhs, rcond=None)[0]
    value, d, g, residual = dual(mu)
    for _ in range(200):
        if np.abs(residual).max() <= tolerance * scale:
            return d
        free = (g > low) & (g < high)
        hessian = jacobian[:, free] @ jacobian[:, free].T  # (T, T)
        step = np.linalg.lstsq(hessian, residual, rcond=None)[0] if free.any() else residual
        slope = float(residual @ step)
        if not slope > 1e-14 * float(residual @ residual):
            step, slope = residual, float(residual @ residual)  # Newton gives no ascent: a gradient step
        size = 1.0
        while size > 1e-12:
            candidate = dual(mu + size * step)
            if candidate[0] >= value + 1e-4 * size * slope:
                break
            size /= 2.0
        else:
            return None  # no ascent is possible and the residual is not zero: infeasible
        mu = mu + size * step
        value, d, g, residual = candidate
        if not np.isfinite(value) or np.abs(mu).max() > 1e12:
            return None
    return None
