"""InstructAudio web demo: a Gradio app over `InstructAudioPipeline`.

    python app/app.py                          # the shipped demo model, on http://127.0.0.1:7860
    python app/app.py --model PATH_OR_REPO_ID  # any saved pipeline
    python app/app.py --model tiny-random      # toy random weights: tries the interface, output is noise

Needs the `app` extra (`pip install -e ".[app]"`). The page is `instructaudio_diffusers.app.ui`, the rules it
enforces `instructaudio_diffusers.app.core`, the HTTP limits `instructaudio_diffusers.app.http_limits`.
"""

import sys

from instructaudio_diffusers.app.ui import main

if __name__ == "__main__":
    sys.exit(main())
