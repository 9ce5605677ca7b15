"""The smallest job that follows the suspend protocol: polls for the command, then calls go_suspend().

``python suspend_job.py``: prints ``polling`` once, then ``suspending`` when rank 0 is told to.
"""

import time

from haiplatform import job as hai_job

print("polling", flush=True)
while not hai_job.receive_suspend_command():
    time.sleep(0.05)
print("suspending", flush=True)
hai_job.go_suspend()
