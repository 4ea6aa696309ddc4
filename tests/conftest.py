import os

import pytest
import torch

# No model hub here or in CI: any accidental hub lookup must fail fast instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread for a test module of tiny tensors: with the 2 cores shared, torch's threads spin
    against other processes and a 4 ms forward takes a second. Use it with
    `pytestmark = pytest.mark.usefixtures("single_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
