#!/usr/bin/env bash
# Regenerate tests/data/speech.wav: two English sentences spoken by espeak-ng,
# framed by silence, 16 kHz mono PCM16. Needs Debian's espeak-ng and sox.
# The known speech intervals are written to speech.json beside the WAV.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

espeak-ng -v en-us -s 150 -w "$tmp/one.wav" "The quick brown fox jumps over the lazy dog."
espeak-ng -v en-us -s 150 -w "$tmp/two.wav" "Memory climbed until the gateway was restarted."
sox "$tmp/one.wav" -r 16000 "$tmp/one16.wav"
sox "$tmp/two.wav" -r 16000 "$tmp/two16.wav"
sox -n -r 16000 -c 1 "$tmp/silence.wav" trim 0 1.5
sox "$tmp/silence.wav" "$tmp/one16.wav" "$tmp/silence.wav" "$tmp/two16.wav" "$tmp/silence.wav" -b 16 speech.wav

# Speech intervals in ms: each sentence starts after 1.5 s of silence.
one_ms=$(soxi -D "$tmp/one16.wav" | awk '{printf "%d", $1 * 1000}')
two_ms=$(soxi -D "$tmp/two16.wav" | awk '{printf "%d", $1 * 1000}')
start_two=$((1500 + one_ms + 1500))
cat > speech.json <<JSON
{
  "sample_rate": 16000,
  "note": "espeak-ng output; each interval spans one sentence's WAV, including its own short leading and trailing silence",
  "speech_ms": [[1500, $((1500 + one_ms))], [$start_two, $((start_two + two_ms))]]
}
JSON
