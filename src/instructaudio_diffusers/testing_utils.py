"""Tiny, seeded pipeline components for tests, built in code (no files, no hub).

As in diffusers' own pipeline tests: `get_dummy_components()` returns every component of
[`InstructAudioPipeline`] at toy size, `get_dummy_inputs(seed)` a matching call. Users testing
extensions of the pipeline can use them too.
"""

from __future__ import annotations

import torch
from diffusers.schedulers import FlowMatchEulerDiscreteScheduler

from .models import AutoencoderKLMel, HifiGanVocoder, InstructAudioTransformerModel
from .processing import InstructAudioProcessor

#: A toy mel configuration: 8 kHz, hop 16, so one latent frame (r = 2) is 4 ms of audio.
TINY_MEL = dict(
    sampling_rate=8000, n_fft=64, hop_length=16, win_length=64, n_mels=16, mel_fmin=0.0, mel_fmax=4000.0
)


def get_dummy_tokenizer_and_encoder(hidden_size: int = 16):
    """A byte-level BPE tokenizer without merges (covers any UTF-8 text) and a 1-layer random BERT."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    byte_alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {
        "<pad>": 0,
        "<s>": 1,
        "</s>": 2,
        **{symbol: i + 3 for i, symbol in enumerate(sorted(byte_alphabet))},
    }
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", model_max_length=256
    )
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=256,
    )
    return tokenizer, BertModel(config).eval()


def get_dummy_components(**transformer_config) -> dict:
    """Seeded tiny components for [`InstructAudioPipeline`]; every call returns identical weights.

    `transformer_config` overrides the tiny transformer's configuration (e.g. `phoneme_alignment="durations"`)."""
    processor = InstructAudioProcessor()
    tokenizer, text_encoder = get_dummy_tokenizer_and_encoder(hidden_size=16)

    torch.manual_seed(0)
    transformer = InstructAudioTransformerModel(
        in_channels=4,
        num_joint_layers=2,
        num_single_layers=1,
        hidden_size=32,
        num_attention_heads=2,
        ff_mult=2.0,
        ff_kernel_size=3,
        instruction_dim=16,
        phoneme_vocab_size=len(processor),
        phoneme_encoder_layers=1,
        phoneme_encoder_hidden_size=16,
        phoneme_encoder_heads=2,
        phoneme_encoder_ff_size=32,
        max_audio_frames=512,
        duration_predictor_hidden_size=16,
        timestep_embedding_dim=32,
        **transformer_config,
    )
    # The zero-initialised output layers would make every generation exactly zero; random ones make
    # the tests see real signal flow.
    with torch.no_grad():
        for name, parameter in transformer.named_parameters():
            if parameter.abs().sum() == 0 and not name.endswith("bias"):
                parameter.normal_(0.0, 0.02)

    torch.manual_seed(0)
    vae = AutoencoderKLMel(
        **TINY_MEL,
        latent_channels=4,
        block_out_channels=(16, 16),
        downsample_factors=(2,),
        layers_per_block=1,
    )
    torch.manual_seed(0)
    vocoder = HifiGanVocoder(
        sampling_rate=TINY_MEL["sampling_rate"],
        n_mels=TINY_MEL["n_mels"],
        upsample_rates=(4, 4),
        upsample_kernel_sizes=(8, 8),
        upsample_initial_channel=16,
        resblock_kernel_sizes=(3,),
        resblock_dilation_sizes=((1, 3),),
        resblock="2",
    )
    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0)
    for module in (text_encoder, transformer, vae, vocoder):
        module.eval()
    return {
        "tokenizer": tokenizer,
        "text_encoder": text_encoder,
        "processor": processor,
        "transformer": transformer,
        "vae": vae,
        "vocoder": vocoder,
        "scheduler": scheduler,
    }


def get_dummy_inputs(seed: int = 0, device: str | torch.device = "cpu") -> dict:
    """A short English speech call with a seeded generator and two denoising steps."""
    return {
        "instruction": "A young woman speaks cheerfully.",
        "text": "Hello world.",
        "audio_length_in_s": 0.1,
        "num_inference_steps": 2,
        "guidance_scale": 2.0,
        "generator": torch.Generator(device="cpu").manual_seed(seed),
        "output_type": "np",
    }
