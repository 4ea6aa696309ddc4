"""InstructAudio web demo: a Gradio app over `InstructAudioPipeline`.

    python app/app.py                          # the shipped demo model, on http://127.0.0.1:7860
    python app/app.py --model PATH_OR_REPO_ID  # any saved pipeline
    python app/app.py --model tiny-random      # toy random weights: tries the interface, output is noise

Needs the `app` extra (`pip install -e ".[app]"`). The rules (validation, generation, language detection,
mel plotting) live in `core` and the HTTP limits in `http_limits`; this module only lays out widgets
and wires them to those functions.

Every event takes its inputs as posted (`preprocess=False`), so that a malformed value reaches the app's own
checks, which refuse it with a message for the user and one line in the server log, rather than failing in
Gradio's preprocessing with an empty error and a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys

# Gradio reports usage to its servers by default; a local demo has no business calling out.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from .. import InstructAudioPipeline  # noqa: E402
from ..pipelines.pipeline_instructaudio import DEFAULT_INFERENCE_STEPS  # noqa: E402
from ..pretrained import TINY_RANDOM, ModelNotFoundError  # noqa: E402
from .core import (  # noqa: E402 (after the environment is set for Gradio)
    DEFAULT_MAX_SECONDS,
    EXAMPLES,
    MAX_GUIDANCE_SCALE,
    MAX_INFERENCE_STEPS,
    MAX_SEED,
    MIN_GUIDANCE_SCALE,
    TASKS,
    GenerationResult,
    describe_languages,
    generate_stream,
    language_label,
    length_cap_in_s,
    load_pipeline,
    mel_image,
    requested_length,
    to_int16,
    validate_request,
    wav_bytes,
)
from .http_limits import RequestLimits, logger  # noqa: E402

#: Label and placeholder of the text box for each task: the same box holds words, turns or lyrics.
TEXT_BOX = {
    "Speech": ("Text", "What to say, in English, Chinese or both. Fix a pronunciation with read{R EH1 D}."),
    "Dialogue": ("Dialogue", "[S0] First speaker's turn. [S1] Second speaker's turn."),
    "Music": (
        "Lyrics (empty: instrumental)",
        "[verse] ... [chorus] ... or leave empty for instrumental music",
    ),
}
#: Largest request body accepted: a text at the processor's limit, JSON-escaped, fits several times over.
MAX_BODY_BYTES = 256 * 1024
#: API calls per second the server answers, on average and in a burst, and how many may wait for their turn.
#: One person typing sends at most one language-label call at a time; a generation is one call.
API_CALLS_PER_S = 4.0
API_BURST = 8
API_MAX_WAITING = 8
#: Queue joins (generation requests) pass in bursts of up to this many before the rate applies, so that a
#: burst reaches the queue, which keeps `--max_queue` of them and answers the rest "Queue is full".
QUEUE_JOIN_BURST = 32
#: Generated audio and images stay downloadable for 10 to 20 minutes, then are deleted.
CACHE_CLEANUP_S = 600
RANDOM_WEIGHTS_BANNER = (
    '<div id="random-weights-banner" style="padding:0.8em 1em;border-radius:8px;background:#fde68a;'
    'color:#78350f;border:2px solid #d97706;font-weight:600">Random weights: this app runs the '
    f"<code>{TINY_RANDOM}</code> toy pipeline, so every output is noise. It shows the interface only; start "
    "it with <code>--model</code> and a trained pipeline for real audio.</div>"
)


def _import_gradio():
    try:
        import gradio as gr
    except ImportError as err:
        raise SystemExit('The web demo needs Gradio: pip install -e ".[app]"') from err
    return gr


def refuse(gr, message: str):
    """A `gr.Error` for the page, logged as one line (Gradio would print a traceback for each)."""
    logger.warning("refused: %s", message)
    return gr.Error(message, print_exception=False)


def _blocks_class(gr):
    class Blocks(gr.Blocks):
        """`gr.Blocks` whose refusal of a call with missing inputs is a message, not an empty error."""

        def validate_inputs(self, block_fn, inputs):
            try:
                super().validate_inputs(block_fn, inputs)
            except ValueError:
                raise refuse(
                    gr, f"{block_fn.name} takes {len(block_fn.inputs)} input values, got {len(inputs)}."
                ) from None

    return Blocks


def build_demo(
    pipe: InstructAudioPipeline,
    *,
    model_name: str,
    is_random: bool,
    max_seconds: float,
    max_queue: int,
    stream_playback: bool | None = None,
):
    """Lay out the page and wire its events.

    Playback starts with the vocoder's first chunk: Gradio's streaming player encodes the chunks as they come
    (AAC, through FFmpeg) and serves them as a live HLS playlist. That player's final value is the playlist, a
    lossy copy kept only as long as the session, not a WAV file, so it is a second player beside the full-clip
    one, which gets the WAV at the end as before: the page keeps a lossless, downloadable clip, and the
    `/generate` API keeps its outputs in their places (the player's is one more, last).

    Args:
        pipe: The pipeline every request runs on (one, shared: the queue lets one request at a time in).
        model_name: Shown in the header.
        is_random: Show the random-weights banner.
        max_seconds: `--max_seconds`; the cap is lower when the model cannot place that much audio.
        max_queue: Requests that may wait; more are turned away rather than piling up.
        stream_playback: Stream the chunks to the page's player; default: when FFmpeg is on the PATH, which
            Gradio's streaming player needs. Without it the player stays hidden and playback starts with the
            full clip.

    Returns:
        The queued `gr.Blocks`, ready to `launch()`.
    """
    gr = _import_gradio()
    max_length_in_s = length_cap_in_s(pipe, max_seconds)
    if stream_playback is None:
        stream_playback = shutil.which("ffmpeg") is not None
        if not stream_playback:
            logger.warning("FFmpeg is not on the PATH: playback starts once the whole clip is generated.")

    def language_of(text) -> str:
        return language_label(text, pipe.processor)

    def on_task_change(task):
        if not isinstance(task, str) or task not in TEXT_BOX:
            raise refuse(gr, f"Unknown task {task!r}: choose one of {', '.join(TASKS)}.")
        label, placeholder = TEXT_BOX[task]
        return gr.Textbox(label=label, placeholder=placeholder)

    def on_automatic_length_change(automatic):
        return gr.Slider(interactive=automatic is False)

    def on_generate(
        task: str,
        instruction: str,
        text: str,
        automatic_length: bool,
        audio_length_in_s: float,
        num_inference_steps: float,
        guidance_scale: float,
        seed: float,
        randomize_seed: bool,
        progress=gr.Progress(),  # noqa: B008 (Gradio's way of asking for a progress tracker)
    ):
        try:
            request = validate_request(
                task,
                instruction,
                text,
                requested_length(automatic_length, audio_length_in_s),
                num_inference_steps,
                guidance_scale,
                seed,
                randomize_seed,
                max_length_in_s,
            )
            progress(0, desc="Reading the text")
            for item in generate_stream(
                pipe,
                request,
                max_length_in_s,
                on_step=lambda done, total: progress((done, total), desc="Denoising", unit="steps"),
            ):
                if isinstance(item, GenerationResult):
                    result = item
                elif stream_playback:
                    # Only the streaming player changes until the whole clip is there.
                    yield (*[gr.skip()] * 6, wav_bytes(item, pipe.sampling_rate))
        except (TypeError, ValueError) as err:
            # The processor's and the pipeline's messages already say what is wrong and where.
            raise refuse(gr, str(err)) from None
        for note in result.warnings:
            gr.Warning(note)
        progress(1.0, desc="Drawing the mel-spectrogram")
        yield (
            (result.sampling_rate, to_int16(result.audio)),
            mel_image(pipe, result.audio),
            " ".join(result.phonemes),
            result.summary(),
            result.seed,
            describe_languages(result.languages),
            gr.skip(),  # the streaming player plays on to the end of what it was sent
        )

    blocks = _blocks_class(gr)(
        title="InstructAudio", analytics_enabled=False, delete_cache=(CACHE_CLEANUP_S, CACHE_CLEANUP_S)
    )
    with blocks as demo:
        gr.Markdown(
            "# InstructAudio\nSpeech, two-speaker dialogue and music in English and Chinese from a "
            f"natural-language instruction. Model: `{model_name}`, {pipe.sampling_rate} Hz, "
            f"clips up to {max_length_in_s:.1f} s."
        )
        if is_random:
            gr.HTML(RANDOM_WEIGHTS_BANNER)
        with gr.Row():
            with gr.Column(scale=3):
                task = gr.Radio(list(TASKS), value="Speech", label="Task", elem_id="task")
                instruction = gr.Textbox(
                    label="Instruction",
                    placeholder="A young woman speaks cheerfully. / Upbeat electronic track, 128 BPM.",
                    lines=2,
                    elem_id="instruction",
                )
                text = gr.Textbox(
                    label=TEXT_BOX["Speech"][0], placeholder=TEXT_BOX["Speech"][1], lines=4, elem_id="text"
                )
                language = gr.Textbox(
                    label="Detected language",
                    value=language_of(""),
                    interactive=False,
                    elem_id="language",
                )
                with gr.Accordion("Advanced settings", open=False):
                    automatic_length = gr.Checkbox(
                        value=True, label="Automatic duration (predicted from the text)", elem_id="automatic"
                    )
                    audio_length_in_s = gr.Slider(
                        minimum=min(0.5, max_length_in_s),
                        maximum=max_length_in_s,
                        value=min(5.0, max_length_in_s),
                        step=0.1,
                        label="Duration (s)",
                        interactive=False,
                        elem_id="duration",
                    )
                    num_inference_steps = gr.Slider(
                        1,
                        MAX_INFERENCE_STEPS,
                        value=DEFAULT_INFERENCE_STEPS,
                        step=1,
                        label="Steps",
                        elem_id="steps",
                    )
                    guidance_scale = gr.Slider(
                        MIN_GUIDANCE_SCALE,
                        MAX_GUIDANCE_SCALE,
                        value=2.0,
                        step=0.1,
                        label="Guidance scale",
                        elem_id="guidance",
                    )
                    with gr.Row():
                        seed = gr.Number(
                            value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed", elem_id="seed"
                        )
                        randomize_seed = gr.Checkbox(
                            value=True, label="Randomize seed", elem_id="randomize-seed"
                        )
                generate_button = gr.Button("Generate", variant="primary", elem_id="generate-button")
            with gr.Column(scale=4):
                stream_player = gr.Audio(
                    label="Playback (streamed while generating)",
                    streaming=True,
                    autoplay=True,
                    interactive=False,
                    buttons=[],  # the download is the full clip's, below: a WAV, not the stream's AAC
                    visible=stream_playback,
                    elem_id="stream-audio",
                )
                audio = gr.Audio(
                    label="Audio", type="numpy", format="wav", interactive=False, elem_id="output-audio"
                )
                mel = gr.Image(label="Mel-spectrogram", type="numpy", interactive=False, elem_id="mel-image")
                phonemes = gr.Textbox(
                    label="Phonemes (the processor's tokens; fix a word with {...} in the text)",
                    lines=3,
                    interactive=False,
                    elem_id="phonemes",
                )
                info = gr.Textbox(label="Generation", interactive=False, elem_id="generation-info")
        gr.Examples(examples=[list(example) for example in EXAMPLES], inputs=[task, instruction, text])

        off_queue = dict(queue=False, show_progress="hidden", preprocess=False)
        task.change(on_task_change, inputs=task, outputs=text, **off_queue)
        # Per keystroke, off the queue so typing never waits behind a generation; language_label keeps it cheap
        # for any text and RequestLimits bounds how often anyone may call it.
        text.change(language_of, inputs=text, outputs=language, **off_queue)
        automatic_length.change(
            on_automatic_length_change, inputs=automatic_length, outputs=audio_length_in_s, **off_queue
        )
        generate_button.click(
            on_generate,
            inputs=[
                task,
                instruction,
                text,
                automatic_length,
                audio_length_in_s,
                num_inference_steps,
                guidance_scale,
                seed,
                randomize_seed,
            ],
            outputs=[audio, mel, phonemes, info, seed, language, stream_player],
            api_name="generate",
            preprocess=False,
        )
    # One generation at a time: a second would only halve the speed of both and double the memory. Gradio
    # also answers queued events on their REST route, outside the queue and its limits, unless told not to.
    return demo.queue(default_concurrency_limit=1, max_size=max_queue, api_open=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="InstructAudio web demo (Gradio).")
    parser.add_argument(
        "--model",
        default=None,
        help=f"pipeline folder or Hub repo id (default: the shipped demo model); {TINY_RANDOM}: toy "
        "random weights",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: localhost only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument(
        "--max_seconds",
        type=float,
        default=DEFAULT_MAX_SECONDS,
        help="longest clip a request may ask for, automatic lengths included "
        f"(default {DEFAULT_MAX_SECONDS:g})",
    )
    parser.add_argument("--max_queue", type=int, default=16, help="requests that may wait; more are refused")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    return parser


def server_options() -> dict:
    """`launch(app_kwargs=...)`: the `RequestLimits` middleware, and a one-line 404 for an unknown endpoint
    (Gradio raises an exception for those, which would print a traceback per request)."""
    from gradio.route_utils import FnIndexInferError
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse

    async def unknown_endpoint(request, error):
        logger.warning("refused: %s %s: %s", request.method, request.url.path, error)
        return PlainTextResponse(str(error), status_code=404)

    limits = Middleware(
        RequestLimits,
        max_body_bytes=MAX_BODY_BYTES,
        rate_per_s=API_CALLS_PER_S,
        burst=API_BURST,
        max_waiting=API_MAX_WAITING,
        join_burst=QUEUE_JOIN_BURST,
    )
    return {"middleware": [limits], "exception_handlers": {FnIndexInferError: unknown_endpoint}}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s: %(message)s", level=logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own startup probes, one line each
    if args.max_seconds <= 0 or args.max_queue < 1:
        print("app: error: --max_seconds and --max_queue must be positive.", file=sys.stderr)
        return 2
    try:
        pipe, is_random = load_pipeline(args.model, args.device)
    except ModelNotFoundError as err:
        print(f"app: error: {err}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as err:
        print(f"app: error: cannot load a pipeline from {args.model}: {err}", file=sys.stderr)
        return 2
    demo = build_demo(
        pipe,
        model_name=args.model or "demo model",
        is_random=is_random,
        max_seconds=args.max_seconds,
        max_queue=args.max_queue,
    )
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        show_error=False,
        app_kwargs=server_options(),
    )
    return 0
