"""fdn.interrupts: SIGINT and SIGTERM both become Interrupted, with the shell's exit code, deferred in critical()."""

import os
import signal

import pytest

from fdn.interrupts import Interrupted, StopSignals, exit_code_of


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_raises_interrupted_with_its_exit_code(signum, code):
    with pytest.raises(Interrupted) as caught, StopSignals():
        os.kill(os.getpid(), signum)
    assert caught.value.signum == signum and exit_code_of(caught.value) == code
    assert isinstance(caught.value, KeyboardInterrupt)


def test_critical_block_finishes_before_the_signal_is_raised():
    finished = []
    with pytest.raises(Interrupted) as caught, StopSignals() as stops:
        with stops.critical():
            os.kill(os.getpid(), signal.SIGTERM)
            finished.append("write")
        finished.append("after")  # not reached: raised at the end of the critical block
    assert finished == ["write"] and caught.value.exit_code == 143


def test_previous_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
    assert exit_code_of(KeyboardInterrupt()) == 130
