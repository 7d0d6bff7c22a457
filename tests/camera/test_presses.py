"""Doorbell presses: a GPIO button (gpiozero's mock pins) with a chime, and scripted presses."""

import time

import pytest

from doorbell.camera.presses import NoButton, ScriptedPresses

BUTTON_PIN, CHIME_PIN = 17, 27


@pytest.fixture
def factory():
    mock = pytest.importorskip("gpiozero.pins.mock", reason="gpiozero is not installed")
    factory = mock.MockFactory()
    yield factory
    factory.reset()


def make_doorbell(factory, **kwargs):
    from doorbell.camera.presses import GpioDoorbell

    return GpioDoorbell(BUTTON_PIN, CHIME_PIN, pin_factory=factory, **kwargs)


def wait_for(condition, timeout_s: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def test_button_press_registers_once_and_rings_the_chime(factory):
    doorbell = make_doorbell(factory, debounce_s=0.05, chime_s=0.3)
    try:
        button, chime = factory.pin(BUTTON_PIN), factory.pin(CHIME_PIN)
        assert button.pull == "up"  # the button shorts the pin to ground
        assert button.bounce == pytest.approx(0.05)  # debounce handed to the pin driver
        assert doorbell.pressed(0) is False
        assert chime.state is False or chime.state == 0

        button.drive_low()  # pressed
        assert doorbell.pressed(1) is True
        assert doorbell.pressed(2) is False  # once per press, not once per frame held down
        assert wait_for(lambda: bool(chime.state)), "the chime never went high"
        button.drive_high()  # released
        assert doorbell.pressed(3) is False
        assert wait_for(lambda: not chime.state, 2.0), "the chime stayed on"

        # a bouncy contact (low-high-low within the debounce time) between two frames is one
        # press for the recorder
        button.drive_low()
        button.drive_high()
        button.drive_low()
        assert doorbell.pressed(4) is True
        assert doorbell.pressed(5) is False
        button.drive_high()

        # the next real press counts again
        time.sleep(0.06)
        button.drive_low()
        assert doorbell.pressed(6) is True
        button.drive_high()
    finally:
        doorbell.close()


def test_button_without_chime(factory):
    from doorbell.camera.presses import GpioDoorbell

    doorbell = GpioDoorbell(BUTTON_PIN, None, pin_factory=factory)
    try:
        factory.pin(BUTTON_PIN).drive_low()
        assert doorbell.pressed(0) is True
    finally:
        doorbell.close()


def test_scripted_presses_fire_once_per_scripted_time():
    presses = ScriptedPresses([2_000_000, 5_000_000])
    frame_us = 66_667
    fired = [t for t in range(0, 20_000_000, frame_us) if presses.pressed(t)]
    assert len(fired) == 2
    assert 2_000_000 <= fired[0] < 2_000_000 + frame_us
    assert 5_000_000 <= fired[1] < 5_000_000 + frame_us


def test_scripted_presses_repeat_with_the_period():
    period_us = 10_000_000
    presses = ScriptedPresses([5_000_000, 2_000_000], period_us)  # any order
    frame_us = 100_000
    fired = [t for t in range(0, 35_000_000, frame_us) if presses.pressed(t)]
    assert fired == [2_000_000, 5_000_000, 12_000_000, 15_000_000, 22_000_000, 25_000_000,
                     32_000_000]


def test_scripted_presses_between_sparse_frames_fire_once():
    presses = ScriptedPresses([1_000_000, 1_100_000])
    assert presses.pressed(500_000) is False
    assert presses.pressed(3_000_000) is True  # both fell between these frames: one press
    assert presses.pressed(4_000_000) is False


def test_no_button_never_presses():
    button = NoButton()
    assert not any(button.pressed(t) for t in range(0, 10_000_000, 100_000))
    button.close()
