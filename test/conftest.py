"""Shared pytest set-up: make src/ importable when the catkin workspace is not sourced.

With the workspace sourced, catkin's devel-space ``depth_ms`` package (which joins src/ and the
generated ``depth_ms.msg``) must win, so src/ is only added as a fallback.
"""
import importlib.util
import os
import sys

if importlib.util.find_spec("depth_ms") is None:
    sys.path.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

# The test-only PyTorch references (diffusers, transformers) decide once, at import, whether torch is usable;
# the estimators set USE_TORCH=0 for the product (mindspore_device.keep_torch_out). Import the references
# first, so that no test order leaves them without torch.
for _reference in ("diffusers", "transformers"):
    if importlib.util.find_spec(_reference) is not None:
        importlib.import_module(_reference)
