"""The edit: requested traits reached, the others held, minimal norm, within the bound, exact no-ops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fantasyid.editing import TRAIT_NAMES, ShapeEditor, parse_assignment, parse_edit
from fantasyid.editing.edit import ACCEPT_TOLERANCE, min_norm_in_box
from fantasyid.errors import InputError

#: Held traits move less than this (mm or degrees); the solver stops at 1e-7 and refuses anything past 1e-3.
HELD_TOLERANCE = 1e-4

WIDTH = TRAIT_NAMES.index("face_width")


def _held(result) -> np.ndarray:
    mask = np.isnan(result.targets)
    return np.abs(result.traits_after - result.traits_before)[mask]


def test_plus_five_percent_width_and_everything_else_held(editor, face_state):
    result = editor.edit(face_state, [parse_edit("face_width", "+5%")])
    achieved = result.traits_after[WIDTH] / result.traits_before[WIDTH] - 1.0
    assert achieved == pytest.approx(0.05, abs=0.005)  # the issue's ± 0.5 %; in fact exact:
    assert achieved == pytest.approx(0.05, abs=1e-7)
    assert _held(result).max() < HELD_TOLERANCE
    # the traits reported are those of the written vertices
    np.testing.assert_allclose(editor.meter.measure(result.after.vertices), result.traits_after, atol=1e-3)
    assert result.changed and 0 < result.coefficient_change < 10


@pytest.mark.parametrize(
    "requests",
    [
        ["jaw_sharpness=+3"],
        ["chin_length=-2mm"],
        ["cheek_fullness=+0.5sd"],
        ["face_width=+8%", "jaw_sharpness=+0.3"],  # the example
        ["nose_width=-1mm", "face_length=+2%", "jaw_width=-3%"],
    ],
)
def test_other_edits_reach_their_targets(editor, face_state, requests):
    result = editor.edit(face_state, [parse_assignment(text) for text in requests])
    requested = ~np.isnan(result.targets)
    assert np.abs(result.traits_after - result.targets)[requested].max() < ACCEPT_TOLERANCE
    assert _held(result).max() < HELD_TOLERANCE


def test_the_change_is_the_minimal_norm_one(editor, face_state):
    """At the optimum, Δβ lies in the row space of the traits' Jacobian (no component that changes no trait)."""
    result = editor.edit(face_state, [parse_edit("face_width", "+5%")])
    assert result.at_bound == 0
    after = torch.from_numpy(result.after.betas.astype(np.float64))
    jacobian = editor._jacobian(after).numpy()
    change = result.after.betas.astype(np.float64) - result.before.betas
    wasted = change - np.linalg.pinv(jacobian) @ (jacobian @ change)
    assert np.linalg.norm(wasted) < 1e-2 * np.linalg.norm(change)
    # and a small random move within the constraint surface's tangent space costs more
    null = np.linalg.svd(jacobian)[2][len(TRAIT_NAMES) :].T
    other = change + null @ np.random.default_rng(0).normal(0.0, 0.05, null.shape[1])
    assert np.linalg.norm(other) > np.linalg.norm(change)


@pytest.mark.parametrize("request_text", ["+0%", "+0mm", "-0sd"])
def test_a_zero_edit_returns_the_input_exactly(editor, face_state, request_text):
    result = editor.edit(face_state, [parse_edit("face_width", request_text)])
    assert not result.changed and result.iterations == 0
    np.testing.assert_array_equal(result.after.betas, face_state.betas)
    np.testing.assert_array_equal(result.after.vertices, face_state.vertices)
    np.testing.assert_array_equal(result.traits_after, result.traits_before)


def test_no_edit_at_all_returns_the_input(editor, released_state):
    result = editor.edit(released_state, [])
    assert result.after is released_state


def test_released_mode_edits_the_shape_and_keeps_expression_and_pose(editor, flame, released_state):
    result = editor.edit(released_state, [parse_edit("face_width", "+5%")])
    after = result.after
    np.testing.assert_array_equal(after.expression, released_state.expression)
    np.testing.assert_array_equal(after.pose, released_state.pose)
    assert after.mode == "released"
    with torch.no_grad():
        expected = flame(torch.from_numpy(after.betas)[None], torch.from_numpy(after.expression)[None],
                         torch.from_numpy(after.pose)[None])[0].numpy()  # fmt: skip
    np.testing.assert_allclose(after.vertices, expected, atol=1e-6)
    # traits are measured on the neutral shape: the same numbers as a paper-mode edit of the same β
    paper = editor.edit(editor.state(released_state.betas, mode="paper"), [parse_edit("face_width", "+5%")])
    np.testing.assert_allclose(result.traits_after, paper.traits_after, atol=1e-6)
    np.testing.assert_allclose(after.betas, paper.after.betas, atol=1e-6)
    # the posed mesh is not the neutral one (the pose and expression are really there)
    assert np.abs(after.vertices - paper.after.vertices).max() > 1e-4


def test_past_the_bound_is_a_one_line_error_with_the_reachable_range(editor, face_state):
    with pytest.raises(InputError) as info:
        editor.edit(face_state, [parse_edit("face_width", "+80%")])
    message = info.value.message
    assert "\n" not in message and "--face-width +80%" in message and "|β_i| ≤ 3, ‖Δβ‖ ≤ 5" in message
    assert "reaches about" in message and "bound" in info.value.hint
    # the range it names is reachable: 90 % of its upper end works
    high = float(message.split("reaches about ")[1].split(" to ")[1].split()[0])  # "… reaches about L to H mm …"
    current = editor.measure(face_state.betas)[WIDTH]
    target = current + 0.9 * (high - current)
    result = editor.edit(face_state, [parse_edit("face_width", f"={target:.3f}mm")])
    assert result.traits_after[WIDTH] == pytest.approx(target, abs=1e-3)
    assert np.abs(result.after.betas).max() <= 3.0 + 1e-6 and result.coefficient_change <= 5.0 + 1e-9


def test_several_traits_past_the_bound_say_how_much_fits(editor, face_state):
    with pytest.raises(InputError, match=r"about \d+% of it fits") as info:
        editor.edit(face_state, [parse_edit("face_width", "+60%"), parse_edit("jaw_width", "-40%")])
    assert "\n" not in info.value.message


def test_a_smaller_bound_is_respected(flame, face_state):
    tight = ShapeEditor(flame, bound=1.0)
    state = tight.state(np.clip(face_state.betas, -0.9, 0.9), mode="paper")
    result = tight.edit(state, [parse_edit("face_width", "+2%")])
    assert np.abs(result.after.betas).max() <= 1.0 + 1e-6
    assert result.traits_after[WIDTH] == pytest.approx(result.targets[WIDTH], abs=1e-4)


def test_the_size_of_the_edit_is_limited(flame, face_state):
    editor = ShapeEditor(flame, max_change=1.0)
    small = editor.edit(face_state, [parse_edit("face_width", "+1%")])
    assert small.coefficient_change <= 1.0
    with pytest.raises(InputError, match=r"‖Δβ‖ ≤ 1\)") as info:
        editor.edit(face_state, [parse_edit("face_width", "+8%")])
    assert "--max-change" in info.value.hint and "14 apart" in info.value.hint


def test_coefficients_already_past_the_bound_do_not_move_further_out(editor, face_state):
    betas = face_state.betas.copy()
    betas[0] = 4.0
    state = editor.state(betas, mode="paper")
    result = editor.edit(state, [parse_edit("face_width", "+3%")])
    assert abs(result.after.betas[0]) <= 4.0 + 1e-6
    others = np.delete(result.after.betas, 0)
    assert np.abs(others).max() <= 3.0 + 1e-6


def test_sd_unit_is_the_traits_prior_standard_deviation(editor, face_state):
    beta = torch.from_numpy(face_state.betas.astype(np.float64))
    sd = float(np.linalg.norm(editor._jacobian(beta).numpy()[WIDTH]))
    result = editor.edit(face_state, [parse_edit("face_width", "+0.5sd")])
    assert result.targets[WIDTH] - result.traits_before[WIDTH] == pytest.approx(0.5 * sd)


@pytest.mark.parametrize(
    ("trait", "text", "kind", "value"),
    [
        ("face_width", "+8%", "relative", 8.0),
        ("face_width", "-5 %", "relative", -5.0),
        ("chin_length", "+2mm", "change", 2.0),
        ("chin_length", "-0.5cm", "change", -5.0),
        ("jaw_sharpness", "+0.3", "change", 0.3),
        ("jaw_sharpness", "+3deg", "change", 3.0),
        ("cheek_fullness", "+1sd", "sd", 1.0),
        ("face_width", "=150mm", "target", 150.0),
        ("cheek-fullness", "=-1", "target", -1.0),
    ],
)
def test_edit_syntax(trait, text, kind, value):
    edit = parse_edit(trait, text)
    assert (edit.kind, edit.value) == (kind, pytest.approx(value))


@pytest.mark.parametrize(
    ("trait", "text", "match"),
    [
        ("nose_length", "+1mm", "unknown trait 'nose_length'"),
        ("face_width", "wider", "cannot read --face-width 'wider'"),
        ("face_width", "8%", "give a change its sign"),
        ("jaw_sharpness", "+2mm", "measured in deg, not mm"),
        ("face_width", "+2deg", "measured in mm, not deg"),
        ("face_width", "=5%", "a target is a value in mm"),
    ],
)
def test_bad_requests_are_one_line_errors(trait, text, match):
    with pytest.raises(InputError, match=match) as info:
        parse_edit(trait, text)
    assert "\n" not in info.value.message


def test_bad_assignments_and_targets(editor, face_state):
    with pytest.raises(InputError, match="TRAIT=CHANGE"):
        parse_assignment("face_width")
    with pytest.raises(InputError, match="more than once"):
        editor.edit(face_state, [parse_edit("face_width", "+1%"), parse_edit("face_width", "+2%")])
    with pytest.raises(InputError, match="must stay above 0"):
        editor.edit(face_state, [parse_edit("face_width", "-120%")])
    with pytest.raises(InputError, match="must stay between 0 and 180"):
        editor.edit(face_state, [parse_edit("jaw_sharpness", "=200")])


def test_min_norm_in_box():
    jacobian = np.array([[1.0, 1.0, 1.0]])
    free = min_norm_in_box(jacobian, np.array([3.0]), -np.full(3, 5.0), np.full(3, 5.0))
    np.testing.assert_allclose(free, [1.0, 1.0, 1.0])
    capped = min_norm_in_box(jacobian, np.array([3.0]), -np.full(3, 5.0), np.array([0.5, 5.0, 5.0]))
    np.testing.assert_allclose(capped, [0.5, 1.25, 1.25], atol=1e-9)
    assert min_norm_in_box(jacobian, np.array([30.0]), -np.full(3, 5.0), np.full(3, 5.0)) is None
    # against a brute-force QP on random problems
    rng = np.random.default_rng(0)
    for _ in range(5):
        jacobian, rhs = rng.normal(size=(2, 6)), rng.normal(size=2)
        low, high = -np.full(6, 0.6), np.full(6, 0.6)
        found = min_norm_in_box(jacobian, rhs, low, high)
        from scipy.optimize import minimize

        equality = {"type": "eq", "fun": lambda d: jacobian @ d - rhs, "jac": lambda d: jacobian}
        reference = minimize(lambda d: 0.5 * d @ d, np.zeros(6), jac=lambda d: d, method="SLSQP",
                             constraints=[equality], bounds=list(zip(low, high)), options={"ftol": 1e-12})  # fmt: skip
        if reference.success:
            np.testing.assert_allclose(found, reference.x, atol=1e-5)
        else:
            assert found is None
