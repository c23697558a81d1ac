"""Conversion service: RabbitMQ workers that turn stored videos into MP3 with FFmpeg."""
