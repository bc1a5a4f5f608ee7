"""kohya's bucket list and bucket selection (dataset-config.md §6), with the spec's worked examples."""

from __future__ import annotations

import pytest

from library.dataset.buckets import BucketManager, adjust_min_max, check_bucket_steps, make_bucket_resolutions
from library.errors import ConfigError


def test_worked_example_25_buckets():
    resos = make_bucket_resolutions((1024, 1024), 256, 1024, 64)
    assert len(resos) == 25
    assert resos[0] == (256, 1024) and resos[-1] == (1024, 1024)  # sorted by (w, h)
    assert (1024, 256) in resos and (1024, 1024) in resos


def test_worked_example_33_buckets():
    resos = make_bucket_resolutions((1024, 1024), 512, 2048, 64)
    assert len(resos) == 33
    assert resos[0] == (512, 1856) and resos[-1] == (2048, 512)
    assert all(w * h <= 1024 * 1024 for w, h in resos)


def test_worked_example_17_buckets():
    assert len(make_bucket_resolutions((512, 512), 256, 1024, 64)) == 17


def test_every_bucket_fits_area_and_steps():
    for w, h in make_bucket_resolutions((1024, 768), 256, 2048, 32):
        assert w * h <= 1024 * 768 and w % 32 == 0 and h % 32 == 0 and min(w, h) >= 256


def test_exact_size_is_its_own_bucket():
    manager = BucketManager.bucketing((1024, 1024), 256, 1024, 64, no_upscale=False)
    assert manager.select(640, 1024)[:2] == ((640, 1024), (640, 1024))
    assert manager.select(1920, 1080)[:2] == ((1024, 576), (1024, 576))  # same aspect: a pure resize


def test_closest_aspect_and_cover_resize():
    manager = BucketManager.bucketing((1024, 1024), 256, 1024, 64, no_upscale=False)
    bucket, resized, error = manager.select(1000, 700)
    assert bucket == (1024, 704)  # aspect 1.4545, the closest to 1.4286
    # narrower than the bucket: widths match, the height overflows and is cropped later
    assert resized == (1024, int(700 * 1024 / 1000 + 0.5))
    assert resized[1] >= bucket[1]
    assert error == pytest.approx(1024 / 704 - 1000 / 700)


def test_tall_image_picks_closest_aspect():
    manager = BucketManager.bucketing((512, 512), 256, 1024, 64, no_upscale=False)
    bucket, resized, _ = manager.select(500, 1000)
    assert bucket == (320, 704)  # aspect 0.4545 beats (320, 768) = 0.4167 for an image of 0.5
    # the image is wider than the bucket: heights match, width overflows
    assert resized == (352, 704)


def test_small_image_is_upscaled_without_no_upscale():
    manager = BucketManager.bucketing((1024, 1024), 256, 1024, 64, no_upscale=False)
    bucket, resized, _ = manager.select(100, 100)
    assert bucket == (1024, 1024) and resized == (1024, 1024)


def test_no_upscale_small_image_keeps_size_floored_to_steps():
    manager = BucketManager.bucketing((1024, 1024), 256, 1024, 64, no_upscale=True)
    bucket, resized, _ = manager.select(700, 500)
    assert resized == (700, 500) and bucket == (640, 448)


def test_no_upscale_large_image_shrinks_to_area_keeping_aspect():
    manager = BucketManager.bucketing((512, 512), 256, 1024, 64, no_upscale=True)
    bucket, resized, _ = manager.select(2000, 1000)
    assert resized[0] * resized[1] <= 512 * 512 * 1.05
    assert resized[0] / resized[1] == pytest.approx(2.0, rel=0.01)
    assert bucket[0] % 64 == 0 and bucket[1] % 64 == 0
    assert bucket[0] <= resized[0] and bucket[1] <= resized[1]


def test_bucketing_off_single_bucket_cover_resize():
    manager = BucketManager.single((512, 512))
    bucket, resized, _ = manager.select(1024, 768)
    assert bucket == (512, 512) and resized == (683, 512)


def test_min_max_adjusted_to_steps():
    assert adjust_min_max((1024, 1024), 300, 1000, 64, "x") == (256, 1024)


def test_min_below_steps_is_not_rounded_to_zero():
    assert adjust_min_max((64, 64), 32, 128, 64, "x") == (64, 128)


def test_min_above_resolution_names_option():
    with pytest.raises(ConfigError, match="min_bucket_reso must be equal or less than resolution"):
        adjust_min_max((512, 512), 768, 1024, 64, "datasets[0]")


def test_max_below_resolution_names_option():
    with pytest.raises(ConfigError, match="max_bucket_reso must be equal or greater"):
        adjust_min_max((1024, 1024), 256, 512, 64, "datasets[0]")


def test_steps_must_be_multiple_of_model_requirement():
    check_bucket_steps(64, 16, "x")
    with pytest.raises(ConfigError, match=r"bucket_reso_steps is 24.*divisible by 16.*bucket_reso_steps = 32"):
        check_bucket_steps(24, 16, "datasets[0]")
    check_bucket_steps(8, 8, "x")  # generic: another model may need 8
