"""Bad input gets a clear PetriError naming what was wrong, and leaks nothing."""

from __future__ import annotations

import pytest

import petri_nb


def test_unknown_guest_names_the_known_ones():
    with pytest.raises(petri_nb.LaunchError, match=r"unknown guest 'nope'.*tmk"):
        petri_nb.launch("nope")


def test_missing_qemu_binary_says_how_to_install_it():
    with pytest.raises(petri_nb.LaunchError, match=r"qemu-system-nope not found.*apt-get install"):
        petri_nb.launch("tmk", binary="qemu-system-nope")


def test_unknown_accel_and_option_are_rejected():
    with pytest.raises(petri_nb.LaunchError, match="unknown accel 'warp'"):
        petri_nb.launch("tmk", accel="warp")
    with pytest.raises(petri_nb.LaunchError, match="bad launch option"):
        petri_nb.launch("tmk", colour="blue")


def test_qemu_rejecting_its_command_line_is_a_launch_error_with_its_message():
    with pytest.raises(petri_nb.LaunchError, match="QEMU failed.*nonsense"):
        petri_nb.launch("tmk", extra_args=("-device", "nonsense"))


def test_expired_timeout_names_what_was_awaited(vm: petri_nb.Vm):
    with pytest.raises(petri_nb.PetriTimeout, match="timed out after 0.2 s waiting for the VM to halt"):
        vm.wait_for_halt(timeout=0.2)
    with pytest.raises(petri_nb.PetriTimeout, match="console output matching 'nothing'"):
        vm.console.expect("nothing", timeout=0.2)
    assert isinstance(petri_nb.PetriTimeout("x"), TimeoutError)


def test_a_failed_launch_frees_its_name():
    with pytest.raises(petri_nb.LaunchError):
        petri_nb.launch("tmk", name="reused", extra_args=("-device", "nonsense"))
    with petri_nb.launch("tmk", name="reused") as vm:
        assert vm.name == "reused"


def test_launchs_own_options_are_checked_before_the_boot(tmp_path):
    """A wrong watchdog or cache option is reported at once, not after a whole boot (here the
    missing kernel, which the boot would stumble on first, is never looked at)."""
    missing = tmp_path / "no-such-kernel"
    for options, message in (({"screen_watchdog": "2"}, r"launch\(\): screen_watchdog must be float \| None"),
                             ({"console_stall": 0}, r"launch\(\): console_stall must be seconds > 0"),
                             ({"screen_watchdog": 4e7}, r"launch\(\): screen_watchdog must be seconds > 0.*at most"),
                             ({"boot_cache": 1}, r"launch\(\): boot_cache must be bool, not 1")):
        with pytest.raises(petri_nb.BadArgument, match=message):
            petri_nb.launch(kernel=missing, **options)
    with pytest.raises(petri_nb.LaunchError, match="no-such-kernel"):
        petri_nb.launch(kernel=missing, screen_watchdog=None, console_stall=5.0, boot_cache=False)
