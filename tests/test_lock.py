import threading

import pytest

from distill.services.lock import PipelineBusyError, pipeline_lock


def test_another_thread_of_the_same_process_is_refused(tmp_path):
    lock = tmp_path / ".distill.lock"
    errors = []

    def contender():
        try:
            with pipeline_lock(lock):
                pass
        except PipelineBusyError as err:
            errors.append(err)

    with pipeline_lock(lock), pipeline_lock(lock):  # re-entrant in the holding thread
        thread = threading.Thread(target=contender)
        thread.start()
        thread.join()
    assert len(errors) == 1 and "another pipeline run" in str(errors[0])
    thread = threading.Thread(target=contender)
    thread.start()
    thread.join()
    assert len(errors) == 1  # released: the next thread gets it


def test_lock_message_names_the_file(tmp_path):
    lock = tmp_path / ".distill.lock"
    with pipeline_lock(lock):
        result = []
        thread = threading.Thread(target=lambda: result.append(pytest.raises(PipelineBusyError, pipeline_lock(lock).__enter__)))
        thread.start()
        thread.join()
    assert str(lock) in str(result[0].value)
