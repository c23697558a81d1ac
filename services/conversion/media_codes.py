"""The stable ``error.code`` values a conversion can end with, and what each means.

Media codes are permanent (the file itself is the problem): the job fails at once, never retried.
"""

EMPTY_FILE = "empty_file"  # zero bytes
NOT_MEDIA = "not_media"  # no demuxer recognises the bytes (text, random data)
UNSUPPORTED_FORMAT = "unsupported_format"  # a container outside the allow-list (HLS, concat, ...)
CORRUPT = "corrupt_media"  # a known container whose structure is broken
TRUNCATED = "truncated"  # a container cut short (box or file ends early)
ENCRYPTED = "encrypted"  # DRM-protected (ISO/IEC 23001-7 CENC boxes)
NO_AUDIO_STREAM = "no_audio_stream"  # no audio stream at all
UNSUPPORTED_CODEC = "unsupported_codec"  # an audio stream FFmpeg cannot decode (e.g. AC-4)
NO_AUDIO_FRAMES = "no_audio_frames"  # an audio stream with no decodable samples
DECODE_FAILED = "decode_failed"  # FFmpeg gave up while decoding
OUTPUT_TOO_LARGE = "output_too_large"  # the MP3 would exceed MAX_OUTPUT_BYTES
TIMEOUT = "timeout"  # FFmpeg ran longer than CONVERSION_TIMEOUT_SECONDS
AUDIO_TRACK_NOT_FOUND = "audio_track_not_found"  # the audio_track option names a stream the file lacks
TRIM_OUT_OF_RANGE = "trim_out_of_range"  # the start option lies at or past the end of the media
NO_VIDEO_STREAM = "no_video_stream"  # a video format (mp4, webm, mkv) was asked of a file with no moving picture
TOO_LARGE = "too_large"  # a video frame has more pixels than MAX_VIDEO_PIXELS (a decompression bomb)
VIDEO_CODEC_UNAVAILABLE = "video_codec_unavailable"  # the worker's ffmpeg has no encoder for the asked codec

# Operational codes (not the file's fault). The three a retry may cure are the job model's (shared/jobs.py):
# DISK_FULL, the worker's WORK_DIR ran out of space; STORAGE_UNAVAILABLE, object storage kept failing for
# STORAGE_RETRIES tries; SANDBOX_FAILED, ffmpeg, ffprobe or the forked child could not be confined (SANDBOX).
from shared.jobs import DISK_FULL, SANDBOX_FAILED, STORAGE_UNAVAILABLE  # noqa: E402, F401 (part of this list)

INPUT_MISSING = "input_missing"  # the task names an object that does not exist
TOO_MANY_ATTEMPTS = "too_many_attempts"  # the task was delivered MAX_ATTEMPTS times without finishing
INVALID_TASK = "invalid_task"  # the task message does not match its schema
