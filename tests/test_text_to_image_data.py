"""task=text_to_image's data and quality options: aspect-ratio buckets (the table, the batch order, what
the loop receives), kohya's .txt layout with repeats, default caption and trigger, masks, the masked
loss, caption dropout, EMA weights and the kohya-format LoRA (round trip through diffusers' loader on
tiny SD and tiny SDXL). One end-to-end SDXL run on a folder of 6 aspect ratios checks several at once."""

import contextlib
import io
import re

import pytest

from ft import config
from ft.run import rundir
from ft.tasks.text_to_image import buckets, images, kohya
from ft.tasks.text_to_image import pipeline as diffusion
from ft.training import launch

KOHYA_KEY = re.compile(r"^lora_(unet|te|te1|te2)_[a-z0-9_]+\.(lora_down\.weight|lora_up\.weight|alpha)$")
# (height, width) of the end-to-end run's images: 6 aspect ratios, all larger than resolution^2 = 16 x 16,
# nearest to 6 different buckets of the tiny table (sides multiples of 2, 8 to 32)
SHAPES = [(24, 24), (21, 27), (27, 21), (18, 30), (30, 18), (14, 40)]


def test_bucket_table_holds_sizes_of_the_factor_near_the_pixel_count():
    table = buckets.table(1024, 8)  # SDXL's defaults: sides 512 to 2048, multiples of 64 (kohya's)
    assert (1024, 1024) in table and (832, 1216) in table and (1216, 832) in table
    assert all(h % 64 == 0 and w % 64 == 0 and 512 <= min(h, w) and max(h, w) <= 2048 for h, w in table)
    assert all(0.85 * 1024**2 <= h * w <= 1024**2 for h, w in table if max(h, w) <= 1536)
    assert buckets.nearest((3000, 2000), table) == (1216, 832)  # 2:3 portrait -> 0.684, the nearest aspect
    assert buckets.nearest((777, 777), table) == (1024, 1024)
    # a large image is only scaled down to cover its bucket; the crop is what the rounding leaves
    h, w = buckets.cover((3000, 2000), (1216, 832))
    assert (h, w) == (1248, 832) and h <= 3000
    # kohya's default: an image smaller than its bucket is upscaled to cover it; with bucket_no_upscale it
    # gets its own bucket, its size rounded down to the step (a large one first scaled to 1024^2 pixels)
    assert buckets.cover((512, 512), (1024, 1024)) == (1024, 1024)
    assert buckets.own((500, 700), 1024, 64) == (448, 640) and buckets.own((3000, 2000), 1024, 64) == (1216, 832)
    for size in [(500, 700), (3000, 2000), (70, 900)]:
        bucket = buckets.own(size, 1024, 64)
        resized = buckets.cover(size, bucket)
        assert resized[0] <= size[0] and resized[1] <= size[1] and bucket[0] % 64 == 0 and bucket[1] % 64 == 0


def test_epoch_batches_are_one_bucket_each_fixed_by_seed_and_epoch_and_square_data_keeps_the_old_order():
    import torch

    # square data: one bucket, the order of the square crop before buckets (a permutation cut in batches)
    square = buckets.epoch_batches([(16, 16)] * 10, 4, 1, seed=3, epoch=1)
    old = torch.randperm(10, generator=torch.Generator().manual_seed(3 + 1)).tolist()
    assert square == [old[0:4], old[4:8], old[8:10]]

    bucket_of = [SHAPES[i % 3] for i in range(17)]
    for processes in (1, 2):
        batches = buckets.epoch_batches(bucket_of, 2, processes, seed=0, epoch=0)
        assert batches == buckets.epoch_batches(bucket_of, 2, processes, seed=0, epoch=0)
        assert batches != buckets.epoch_batches(bucket_of, 2, processes, seed=0, epoch=1)
        assert {i for batch in batches for i in batch} == set(range(17))
        for step in range(0, len(batches), processes):  # each step: every process's batch of one bucket
            group = batches[step : step + processes]
            assert len({bucket_of[i] for batch in group for i in batch}) == 1
            if processes > 1:
                assert all(len(batch) == 2 for batch in group)


def _kohya_folder(root):
    """kohya's layout: 2 captioned images (jpg, webp) at the top, a `3_subject` folder of 1 png captioned
    and 1 png not (default caption), and a mask beside the jpg."""
    from PIL import Image

    (root / "3_subject").mkdir(parents=True)
    Image.new("RGB", (30, 20), "red").save(root / "a.jpg")
    (root / "a.txt").write_text("a red field\n")
    Image.new("L", (30, 20), 255).save(root / "a.mask.png")
    Image.new("RGB", (20, 30), "blue").save(root / "b.webp")
    (root / "b.txt").write_text("a blue field")
    Image.new("RGB", (16, 16), "green").save(root / "3_subject" / "c.png")
    (root / "3_subject" / "c.txt").write_text("sks shape")
    Image.new("RGB", (16, 16), "white").save(root / "3_subject" / "d.png")
    return root


def test_kohya_folder_with_repeats_default_caption_trigger_and_masks(tmp_path):
    from ft.errors import FtError

    folder = _kohya_folder(tmp_path / "data")
    cfg = config.compose(
        ["recipe=tiny_sd_lora", f"data.source={folder}", "diffusion.default_caption=a photo", "diffusion.trigger=ohwx"]
    )
    examples = images.load(cfg.data, cfg.diffusion)
    captions = [e.caption for e in examples]
    assert captions == ["ohwx, a red field", "ohwx, a blue field"] + ["ohwx, sks shape"] * 3 + ["ohwx, a photo"] * 3
    assert examples[0].mask is not None and examples[0].mask.size == (30, 20) and examples[1].mask is None
    assert examples[1].image.size == (20, 30)  # webp read
    with pytest.raises(FtError, match=r"d\.png has no caption .*diffusion\.default_caption"):
        images.listing(folder, "text", None)
    # the mask is cut like its image: a bucket's crop and flip, values in [0, 1]
    row = images.to_tensor(examples[0].image, (8, 12), True, True, examples[0].mask)
    assert row["pixel_values"].shape == (3, 8, 12) and row["mask"].shape == (1, 8, 12)
    assert row["original_size"] == (20, 30) and row["target_size"] == (8, 12)


def test_masked_loss_takes_no_gradient_from_the_masked_half_and_equals_the_masked_mean():
    from types import SimpleNamespace

    import torch

    parts = diffusion.load_parts(diffusion.resolve_path("tiny-sd"), None, None)
    assert parts.size_factor == 2  # the tiny VAE downsamples once
    d = SimpleNamespace(noise_offset=0.0, snr_gamma=None)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)).requires_grad_()  # a graph
    embeds = torch.randn(2, 77, parts.unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 1, 16, 16)
    mask[..., 8:] = 0  # the right half of each image does not count
    latent_mask = diffusion.latent_mask(mask, latents)
    outputs = []
    hook = parts.unet.register_forward_hook(lambda module, args, output: outputs.append(output[0]))
    for out in (None, "kept"):
        generator = torch.Generator().manual_seed(2)
        m = latent_mask if out else None
        loss = diffusion.diffusion_loss(parts, parts.unet, latents, embeds, None, d, generator, True, mask=m)
        if out:
            outputs[-1].retain_grad()
            loss.sum().backward()
            masked = loss
        else:
            plain_prediction = outputs[-1].detach()
    hook.remove()
    grad = outputs[-1].grad
    assert grad[..., 4:].abs().max() == 0 and grad[..., :4].abs().max() > 0
    # the masked mean by hand, from the same noise and timesteps (same generator draws)
    generator = torch.Generator().manual_seed(2)
    noise = torch.randn(latents.shape, generator=generator)
    error = (plain_prediction - noise) ** 2  # tiny-sd predicts the noise (epsilon)
    by_hand = error[..., :4].mean(dim=(1, 2, 3))
    assert torch.allclose(masked.detach(), by_hand, atol=1e-6), (masked, by_hand)


def _assert_kohya_round_trip(path, run_dir, weight_name, models):
    """The kohya file's keys follow kohya's names, and diffusers' loader reads from it the same LoRA weights
    as from the diffusers file."""
    from diffusers import DiffusionPipeline
    from safetensors import safe_open

    with safe_open(str(run_dir / weight_name), "pt") as f:
        keys, metadata = list(f.keys()), f.metadata()
    assert keys and all(KOHYA_KEY.match(k) for k in keys), [k for k in keys if not KOHYA_KEY.match(k)][:3]
    assert metadata["ss_network_module"] == "networks.lora"
    prefixes = {k.split("_")[1] for k in keys}
    assert prefixes == set(models), prefixes
    diffusers_pipe, kohya_pipe = DiffusionPipeline.from_pretrained(path), DiffusionPipeline.from_pretrained(path)
    diffusers_pipe.load_lora_weights(str(run_dir))
    kohya_pipe.load_lora_weights(str(run_dir), weight_name=weight_name)
    names = {"unet": ["unet"], "te": ["text_encoder"], "te1": ["text_encoder"], "te2": ["text_encoder_2"]}
    for model in (name for prefix in models for name in names[prefix]):
        a = {n: p for n, p in getattr(diffusers_pipe, model).named_parameters() if "lora" in n}
        b = {n: p for n, p in getattr(kohya_pipe, model).named_parameters() if "lora" in n}
        assert a and a.keys() == b.keys() and all((a[k] - b[k]).abs().max() <= 1e-6 for k in a), model
        scales = {m.scaling["default_0"] for m in getattr(kohya_pipe, model).modules() if hasattr(m, "lora_A")}
        assert scales == {2.0}, scales  # lora_alpha 8 / r 4, carried by the .alpha entries


def test_sd15_kohya_file_round_trips_through_diffusers_loader(tmp_path):
    import torch

    path = diffusion.resolve_path("tiny-sd")
    parts = diffusion.load_parts(path, None, None)
    cfg = config.compose(["recipe=tiny_sd_lora", "peft.r=4", "peft.lora_alpha=8", "diffusion.train_text_encoder=true"])
    diffusion.add_lora(parts, cfg.peft, True)
    with torch.no_grad():  # B = 0 at the start: give the up matrices values, so that the check means something
        for model in (parts.unet, *parts.text_encoders):
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(generator=torch.Generator().manual_seed(len(name)))
    diffusion.save_lora(tmp_path, parts.pipeline_class(), parts.unet, parts.text_encoders)
    kohya.save(tmp_path, cfg)
    _assert_kohya_round_trip(path, tmp_path, kohya.KOHYA_WEIGHTS, ["unet", "te"])


@pytest.fixture(scope="module")
def bucket_run(tmp_path_factory):
    """tiny SDXL on 12 images of 6 aspect ratios (.txt captions, one `2_` repeats folder, a mask), batches of
    2, cached latents and text embeddings, caption dropout, EMA, a trigger word; 4 steps."""
    from PIL import Image

    root = tmp_path_factory.mktemp("shapes")
    folder = root / "data"
    (folder / "2_more").mkdir(parents=True)
    for i, (h, w) in enumerate(SHAPES * 2):
        where = folder / "2_more" if i == 11 else folder
        Image.effect_noise((w, h), 40 + 10 * i).convert("RGB").save(where / f"{i:02d}.png")
        (where / f"{i:02d}.txt").write_text(f"a noisy picture number {i}")
    Image.new("L", SHAPES[0][::-1], 255).save(folder / "00.mask.png")
    out = root / "runs"
    cfg = config.compose(
        [
            "recipe=tiny_sdxl_lora",
            f"data.source={folder}",
            "peft.r=4",
            "peft.lora_alpha=8",
            "training.max_steps=4",
            "training.per_device_train_batch_size=2",
            "diffusion.cache_latents=true",
            "diffusion.cache_text_embeddings=true",
            "diffusion.caption_dropout=0.5",
            "diffusion.ema_decay=0.9",
            "diffusion.trigger=ohwx",
            "diffusion.num_inference_steps=2",
            "logging=none",
            f"training.output_dir={out}",
            "training.run_name=buckets",
        ]
    )
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = launch.train(cfg)
    return cfg, result, printed.getvalue()


@pytest.mark.slow
def test_bucketed_sdxl_run_batches_one_bucket_with_each_images_size_conditioning(bucket_run):
    import torch

    from ft.tasks.text_to_image import loop

    cfg, result, printed = bucket_run
    job = result.trainer
    dataset = job.dataset
    assert len(dataset) == 13  # 12 images, one of them in a `2_` folder: twice
    assert len(set(dataset.bucket_of)) == 6
    table = [line for line in printed.splitlines() if line.startswith("ft: bucket ")]
    assert len(table) == 6 and "ft: bucket 8x26 (height x width): 3 image(s)" in table, table
    for example, bucket in zip(dataset.examples, dataset.bucket_of):
        size = (example.image.height, example.image.width)
        resized = buckets.cover(size, bucket)
        assert resized[0] <= size[0] and resized[1] <= size[1], (size, bucket)  # never upscaled
        crop = 1 - bucket[0] * bucket[1] / (resized[0] * resized[1])
        assert crop < 0.15, (size, bucket, resized)  # what the bucket's rounding leaves
        assert example.caption.startswith("ohwx, a noisy picture number")
    seen = []
    for batch in loop._epoch_batches(job, epoch=0, skip=0):
        assert len(set(batch["target_size"])) == 1  # one bucket
        (h, w) = batch["target_size"][0]
        assert batch["latents"].shape[-2:] == (h // 2, w // 2)
        assert batch["mask"].shape[-2:] == (h, w)
        seen += batch["original_size"]
        ids = diffusion.time_ids(batch["original_size"], batch["crop_top_left"], batch["target_size"], "cpu", None)
        assert (
            ids[:, :2].tolist() == [list(s) for s in batch["original_size"]]
            and (ids[:, 4:] == torch.tensor([h, w])).all()
        )
    assert sorted(seen) == sorted((e.image.height, e.image.width) for e in dataset.examples)


@pytest.mark.slow
def test_bucketed_run_writes_ema_and_kohya_weights_the_card_names(bucket_run):
    from safetensors.torch import load_file

    from ft.tasks.text_to_image import loop

    cfg, result, _ = bucket_run
    run_dir = result.run_dir
    raw, ema = load_file(run_dir / rundir.LORA_WEIGHTS), load_file(run_dir / loop.EMA_WEIGHTS)
    assert raw.keys() == ema.keys() and any((raw[k] - ema[k]).abs().max() > 1e-6 for k in raw)
    card = (run_dir / "README.md").read_text()
    assert all(f"`{name}`" in card for name in (rundir.LORA_WEIGHTS, loop.EMA_WEIGHTS, kohya.KOHYA_WEIGHTS))
    assert "Trigger prompt: `ohwx`" in card
    _assert_kohya_round_trip(diffusion.resolve_path("tiny-sdxl"), run_dir, kohya.KOHYA_WEIGHTS, ["unet"])
    # the same file through `ft export format=kohya`
    from ft import cli

    assert cli.main(["export", f"run_dir={run_dir}", "format=kohya", f"out={run_dir / 'k'}"]) == 0
    assert load_file(run_dir / "k" / kohya.KOHYA_WEIGHTS).keys() == load_file(run_dir / kohya.KOHYA_WEIGHTS).keys()


@pytest.mark.slow
def test_caption_dropout_trains_on_the_empty_captions_embeddings(bucket_run):
    import torch

    from ft.tasks.text_to_image import loop

    cfg, result, _ = bucket_run
    job = result.trainer
    batch = next(iter(loop._epoch_batches(job, epoch=0, skip=0)))
    empty, empty_pooled = job.dataset.empty_caption
    n = len(batch["caption"])
    job.cfg.diffusion.caption_dropout = 1.0  # every caption dropped ...
    torch.manual_seed(0)
    dropped = loop.batch_loss(job, batch)
    job.cfg.diffusion.caption_dropout = 0.0  # ... equals training on the empty caption's embeddings
    emptied = batch | {"prompt_embeds": empty.expand(n, -1, -1), "pooled": empty_pooled.expand(n, -1)}
    torch.manual_seed(0)
    torch.rand(n)  # the dropout draw
    assert torch.allclose(dropped, loop.batch_loss(job, emptied))
    torch.manual_seed(0)
    torch.rand(n)
    assert not torch.allclose(dropped, loop.batch_loss(job, batch))
    job.cfg.diffusion.caption_dropout = 0.5
