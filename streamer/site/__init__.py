"""Several cameras on one box: one supervised worker process per camera of the config's
``cameras`` section, restarted when it dies or goes silent, and the site summary."""

from .child import Heartbeat, HeartbeatSink
from .run import DEFAULT_SITE_SUMMARY, camera_jobs, run_site, site_summary_of
from .supervisor import CameraJob, CameraState, Supervisor, summary_path_of

__all__ = ["DEFAULT_SITE_SUMMARY", "CameraJob", "CameraState", "Heartbeat", "HeartbeatSink", "Supervisor",
           "camera_jobs", "run_site", "site_summary_of", "summary_path_of"]
