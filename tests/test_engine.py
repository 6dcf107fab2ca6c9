import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch

from camnet_cli import color, metrics
from camnet_cli import engine as engine_module
from camnet_cli.engine import Engine, EngineError, pick_device, pick_precision
from camnet_cli.model import EnhanceNet, EnhanceNetConfig, RestoreNet, RestoreNetConfig, enhance_config, restore_config
from camnet_cli.pipeline import develop
from tests.conftest import TINY_WIDTHS, develop_tensors, relative_psnr, scene, smooth_packed


def test_auto_tile_follows_free_memory(monkeypatch):
    eng = Engine(RestoreNet(restore_config("paper")), device="cpu", precision="fp32")
    unet = eng.restore_net.unet
    monkeypatch.setattr(engine_module, "free_memory", lambda device: 64 * 2**30)
    assert eng.auto_tile(unet, 400, 300) == 0  # small frames run whole
    assert eng.auto_tile(unet, 1512, 2016) == 512  # on a CPU, the tile that measured fastest
    eng.device = torch.device("cuda")  # only the arithmetic is tested here
    assert eng.auto_tile(unet, 1512, 2016) == 0  # a GPU with memory runs the frame whole
    monkeypatch.setattr(engine_module, "free_memory", lambda device: 1 * 2**30)
    tile = eng.auto_tile(unet, 1512, 2016)
    assert 256 <= tile < 1512 and tile % 16 == 0
    assert tile * tile * 16 * 32 * 4 <= 0.5 * 2**30
    monkeypatch.setattr(engine_module, "free_memory", lambda device: 2**20)
    assert eng.auto_tile(unet, 1512, 2016) == 256  # never planned smaller; OOM retries go below


def test_out_of_memory_retries_with_smaller_tiles(monkeypatch):
    restore = RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS))
    eng = Engine(restore, device="cpu", precision="fp32", tile=0, overlap=16)
    unet = eng.restore_net.unet
    real_forward = type(unet).forward

    def small_only(self, x, pooled=None, encoded=None):
        if x.shape[-1] * x.shape[-2] > 64 * 64:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_forward(self, x, pooled, encoded)

    monkeypatch.setattr(type(unet), "forward", small_only)
    packed = np.random.default_rng(0).random((4, 200, 260)).astype(np.float32)
    out = eng.restore(packed, 1e-3)
    assert out.shape == (3, 400, 520)
    assert eng.last["restore"].retries >= 2 and 0 < eng.last["restore"].tile <= 64

    monkeypatch.setattr(type(unet), "forward", lambda self, x, pooled=None, encoded=None: (_ for _ in ()).throw(torch.OutOfMemoryError("simulated")))
    with pytest.raises(EngineError, match="out of memory"):
        eng.restore(packed, 1e-3)


def test_bf16_is_close_to_fp32():
    torch.manual_seed(1)
    # Without the plain rendering (EnhanceNetConfig.base): a new network's UNet adds nothing to it.
    restore, enhance = RestoreNet(restore_config("lite")), EnhanceNet(dataclasses.replace(enhance_config("lite"), base=0.0))
    packed = np.random.default_rng(1).random((4, 96, 128)).astype(np.float32) * 0.5
    _, srgb32 = develop_tensors(Engine(restore, enhance, device="cpu", precision="fp32", tile=0), packed)
    eng = Engine(restore, enhance, device="cpu", precision="bf16", tile=0)
    _, srgb16 = develop_tensors(eng, packed)
    assert eng.precision == "bf16" and srgb16.dtype == torch.float32
    assert relative_psnr(srgb16, srgb32) > 35


def test_engine_leaves_the_callers_networks_alone():
    restore = RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS))
    before = {k: v.clone() for k, v in restore.state_dict().items()}
    Engine(restore, device="cpu", precision="bf16")
    after = restore.state_dict()
    assert all(after[k].dtype == torch.float32 and torch.equal(after[k], before[k]) for k in before)


def test_device_and_precision_choices(monkeypatch):
    assert pick_device("cpu").type == "cpu"
    first_available = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert pick_device("auto").type == first_available
    if not torch.cuda.is_available():
        with pytest.raises(EngineError, match="no CUDA device"):
            pick_device("cuda")
    with pytest.raises(EngineError):
        pick_device("tpu")
    assert pick_precision("fp16", torch.device("cpu")) == torch.float16
    # auto on a CPU: bf16 only where it has bf16 instructions (emulated bf16 is slower than fp32)
    monkeypatch.setattr(engine_module, "_cpu_has_bf16", lambda: False)
    assert pick_precision("auto", torch.device("cpu")) == torch.float32
    monkeypatch.setattr(engine_module, "_cpu_has_bf16", lambda: True)
    assert pick_precision("auto", torch.device("cpu")) == (torch.bfloat16 if torch.backends.mkldnn.is_available() else torch.float32)
    with pytest.raises(EngineError, match="unknown precision"):
        pick_precision("int8", torch.device("cpu"))


def test_compiled_engine_matches():
    # Two levels: compiling takes about half as long as for five (on a cold inductor cache).
    restore = RestoreNet(RestoreNetConfig(channels=(8, 16), dilations=(1, 1)))
    packed = np.random.default_rng(2).random((4, 32, 48)).astype(np.float32)
    plain = Engine(restore, device="cpu", precision="fp32", tile=0).restore(packed, 1e-3)
    compiled = Engine(restore, device="cpu", precision="fp32", tile=0, compile=True).restore(packed, 1e-3)
    torch.testing.assert_close(compiled, plain, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_matches_cpu():
    """The paper networks on a 1024x1536 raw, in bf16 on the GPU, whole and tiled, against fp32 on the CPU."""
    torch.manual_seed(0)
    restore, enhance = RestoreNet(restore_config("paper")), EnhanceNet(enhance_config("paper"))
    packed = smooth_packed(512, 768)
    _, cpu = develop_tensors(Engine(restore, enhance, device="cpu", precision="fp32", tile=0), packed)
    gpu = Engine(restore, enhance, device="cuda", precision="bf16")
    _, out = develop_tensors(gpu, packed)
    assert relative_psnr(out, cpu) > 35
    tiled = Engine(restore, enhance, device="cuda", precision="bf16", tile=192, batch=4)
    _, out_tiled = develop_tensors(tiled, packed)
    assert relative_psnr(out_tiled, out) > 40


def test_linear_path_through_the_engine_tiled_and_in_half_precision():
    """With a trained (non-zero) linear path the engine gives the network's own output, whole or
    in tiles; in bf16 the path stays float32, so it loses no precision."""
    torch.manual_seed(3)
    restore = RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)).eval()
    with torch.no_grad():
        restore.skip.weight.normal_(0, 0.2)
    packed = np.random.default_rng(3).random((4, 96, 128)).astype(np.float32)
    with torch.no_grad():
        want = restore(torch.from_numpy(packed)[None], 1e-3)[0]
    whole = Engine(restore, device="cpu", precision="fp32", tile=0).restore(packed, 1e-3)
    tiled = Engine(restore, device="cpu", precision="fp32", tile=64, overlap=16).restore(packed, 1e-3)
    torch.testing.assert_close(whole, want, rtol=1e-4, atol=1e-5)
    assert relative_psnr(tiled, want) > 45
    half = Engine(restore, device="cpu", precision="bf16", tile=0)
    assert half.restore_net.skip.weight.dtype == torch.float32
    x = restore.prepare(torch.from_numpy(packed)[None], 1e-3)
    torch.testing.assert_close(half.restore_net.linear_path(x), restore.linear_path(x), rtol=0, atol=0)


def test_ensemble_averages_symmetric_views():
    """--ensemble N: the mean of Restore-Net's results on the first N views of the mosaic
    (the second is the transpose: planes transposed, the two greens swapped). The UNet is
    silenced so that the net is its linear path, a local filter, which sees the same pixels
    in a view as in the image transposed by hand."""
    torch.manual_seed(0)
    restore = RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)).eval()
    with torch.no_grad():
        restore.unet.out.weight.zero_()
        restore.unet.out.bias.zero_()
        restore.skip.weight.normal_(0, 0.3)
    packed = np.random.default_rng(4).random((4, 48, 64)).astype(np.float32)
    plain = Engine(restore, device="cpu", precision="fp32", tile=0).restore(packed, 1e-3)
    pair = Engine(restore, device="cpu", precision="fp32", tile=0, ensemble=2).restore(packed, 1e-3)
    with torch.no_grad():
        transposed = restore(torch.from_numpy(packed)[None].transpose(-1, -2)[:, [0, 2, 1, 3]], 1e-3)[0].transpose(-1, -2)
    assert pair.shape == plain.shape == (3, 96, 128)
    torch.testing.assert_close(pair, (plain + transposed) / 2, rtol=1e-4, atol=1e-5)
    for engine, laid_out in ((Engine(restore, device="cpu", precision="fp32", tile=0), plain), (Engine(restore, device="cpu", precision="fp32", tile=0, ensemble=2), pair)):
        assert torch.equal(engine.restore(packed, 1e-3, phases=True), torch.nn.functional.pixel_unshuffle(laid_out, 2))
    assert (transposed - plain).abs().mean() > 0.05  # the filter is not symmetric: the views differ
    with pytest.raises(EngineError, match="ensemble of 9 views"):
        Engine(restore, device="cpu", ensemble=9)


def test_ensemble_restores_a_noisy_raw_better_with_the_shipped_weights():
    """The point of it: with the shipped Restore-Net, eight views leave less error than one on a
    held-out-like raw at ISO 12800 (measured on the held-out photographs: +0.2 dB)."""
    from camnet_cli.data import synthetic
    from camnet_cli.weights import SHIPPED_DIR, load_weights

    net, _ = load_weights(SHIPPED_DIR / "restore-natural.safetensors", "restore")
    profile = synthetic.noise.from_table("SONY", "ILCE-7RM3", 12800)
    sample = synthetic.synthesize(scene(128, 192, seed=5), np.random.default_rng(0), exposure=(0.5, 0.5), profile=profile)
    scores = []
    for n in (1, 8):
        engine = Engine(net, device="cpu", precision="fp32", tile=0, ensemble=n)
        xyz = color.camera_to_xyz(engine.restore(sample["packed"], float(sample["omega"])), sample["wb"], sample["cam_to_xyz"])
        scores.append(metrics.psnr(xyz.clamp(0, 1), sample["xyz"].clamp(0, 1)).item())
    assert scores[1] > scores[0] + 0.05, scores


def test_engine_enhance_applies_the_notch_whole_or_in_tiles():
    """Engine.enhance gives the Enhance-Net's own output, its notch included (on the whole image
    after the tiles are joined), so a per-position offset of the output layer leaves no grid."""
    torch.manual_seed(4)
    nets = {}
    for notch in (0.0, 2.0):
        nets[notch] = EnhanceNet(EnhanceNetConfig(channels=TINY_WIDTHS, notch=notch)).eval()
        if notch:
            nets[notch].load_state_dict(nets[0.0].state_dict())
    with torch.no_grad():
        for net in nets.values():
            net.unet.out.bias.add_(torch.tensor([0.04, -0.04, 0.0, 0.0]).repeat(3))
    xyz = torch.rand(3, 192, 256)
    with torch.no_grad():
        want = nets[2.0](xyz[None])[0]
    whole = Engine(RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)), nets[2.0], device="cpu", precision="fp32", tile=0).enhance(xyz)
    tiled = Engine(RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)), nets[2.0], device="cpu", precision="fp32", tile=64, overlap=16).enhance(xyz)
    plain = Engine(RestoreNet(RestoreNetConfig(channels=TINY_WIDTHS)), nets[0.0], device="cpu", precision="fp32", tile=0).enhance(xyz)
    torch.testing.assert_close(whole, want, rtol=1e-4, atol=1e-5)
    assert relative_psnr(tiled, want) > 40
    assert metrics.grid(whole, want).item() < 1e-4 and metrics.grid(plain, want).item() > 0.01


def test_chroma_noise_reduction_after_enhance_net():
    """Engine.enhance(xyz, sigma) is Enhance-Net's output through color.smooth_chroma, and with the
    shipped pair and develop's automatic width it leaves less error than without on noisy raws at
    ISO 12800 (on the held-out photographs, v9: +0.8 dB; on these three small synthetic scenes, whose
    colour noise Restore-Net v9 mostly removes, from -0.16 to +0.77 dB, +0.28 on average: the filter
    may cost a little where there is little colour noise left, never much)."""
    from camnet_cli.data import synthetic
    from camnet_cli.weights import SHIPPED_DIR, load_weights

    restore, _ = load_weights(SHIPPED_DIR / "restore-natural.safetensors", "restore")
    enhance, _ = load_weights(SHIPPED_DIR / "enhance-natural.safetensors", "enhance")
    engine = Engine(restore, enhance, device="cpu", precision="fp32", tile=0)
    profile = synthetic.noise.from_table("SONY", "ILCE-7RM3", 12800)
    gains = []
    for seed in (6, 7, 8):
        sample = synthetic.synthesize(scene(128, 192, seed=seed), np.random.default_rng(1), exposure=(0.5, 0.5), profile=profile)
        omega, read = float(sample["omega"]), float(sample["read"])
        off, on = (develop(engine, sample["packed"], omega, sample["wb"], sample["cam_to_xyz"], chroma=c, read=read) for c in (0, None))
        # "auto" (None) is the filter at the noise level's width, on Enhance-Net's output
        filtered = color.smooth_chroma(engine.enhance(off.xyz, phases=True)[None], color.chroma_sigma(omega))[0].clamp(0, 1)
        torch.testing.assert_close(torch.from_numpy(on.srgb), filtered.permute(1, 2, 0))
        off_score, on_score = (metrics.psnr(torch.from_numpy(x.srgb).permute(2, 0, 1), sample["srgb"].clamp(0, 1)).item() for x in (off, on))
        gains.append(on_score - off_score)
    assert np.mean(gains) > 0.1 and min(gains) > -0.25, gains


def test_threads_follow_the_cpus_the_process_may_use():
    """Under an affinity of one CPU (taskset, a SLURM allocation) camnet sizes torch's pool to it, not
    to the machine; OMP_NUM_THREADS set by the user wins."""
    import os
    import shutil
    import subprocess
    import sys

    if shutil.which("taskset") is None:
        pytest.skip("taskset is not installed")
    code = "from camnet_cli.engine import available_cpus, use_cpus; import torch; print(available_cpus(), use_cpus(), torch.get_num_threads())"
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    one = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert one.stdout.split() == ["1", "1", "1"], one.stderr
    told = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert told.stdout.split()[1:] == ["1", "1"], told.stderr


_FAULTS = """
import resource, torch
from camnet_cli.engine import keep_freed_memory
kept = keep_freed_memory()
block = 24 << 20


def tile():  # three blocks at once, as a tile's activations are, then freed
    blocks = [torch.empty(block, dtype=torch.uint8) for _ in range(3)]
    for b in blocks:
        b.fill_(1)


for _ in range(3):  # the heap grows to hold them
    tile()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(8):
    tile()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_kept_for_the_next_blocks():
    """After keep_freed_memory, the blocks a tile frees (three of 24 MB) serve the next tile's
    without the system zeroing and faulting in their pages again, where glibc's defaults may hand
    them back after each (counted in page faults, not timed; in a fresh process, as a develop runs)."""

    done = subprocess.run([sys.executable, "-c", _FAULTS], capture_output=True, text=True, check=True)
    kept, count = done.stdout.split()
    # At most one tile's blocks faulted in once (glibc places the first ones as it likes: 0 to 2 of
    # them measured); handed back after every tile it would be 8 x 18,432. With glibc's defaults
    # this process measured 6,144 to 147,200.
    assert kept == "True" and int(count) <= 3 * (24 << 20) // 4096
