"""Generative pitch by measurement: chords whose settled voices sit on scale
tones and spell a chord of the scale, changing every change_s and gliding
without steps; a melodic line whose notes (pitch by FFT over each sustain) are
in its scale and register, at the note rate density_hz asks for, never
repeating; seeding, block-size invariance and errors that name the option."""

from __future__ import annotations

import numpy as np
import pytest

from engine.dsp.interpreter import render_program
from engine.dsp.kernels_gen import CHORDS, SCALES
from engine.dsp.layout import I_OUT, I_VOICES
from engine.graph.compile import compile_graph
from engine.graph.graph import Graph, GraphError
from engine.rt.render import render_graph

FS = 48000
# Chords are control signals: their logic runs the same at any rate, and a low
# one keeps minutes of four voices quick to analyse.
CONTROL_FS = 4000
BLOCK_SIZES = (1, 63, 64, 1000)


def _voices(
    kind: str, seconds: float, fs: int = FS, block: int = 512, seed: int = 0, **settings
) -> np.ndarray:
    """Every voice of one node, ``[voices, frames]``, rendered block by block."""
    g = Graph()
    voices = settings.pop("voices", None)
    node = g.node(kind, name="gen", voices=voices, **settings)
    g.output(node[0])
    prog = compile_graph(g, fs, block, seed)
    row = prog.instr[prog.node_names.index("gen")]
    first, width = int(row[I_OUT]), int(row[I_VOICES])
    n = int(seconds * fs)
    out = np.empty((width, n))
    pos = 0
    while pos < n:
        k = min(block, n - pos)
        render_program(prog.arrays, float(fs), k)
        out[:, pos : pos + k] = prog.bufs[first : first + width, :k]
        pos += k
    return out


def _semitones(freq_hz: np.ndarray, root_hz: float) -> np.ndarray:
    return 12.0 * np.log2(freq_hz / root_hz)


def _off_scale_cents(semis: np.ndarray, scale: tuple[int, ...]) -> np.ndarray:
    """Distance in cents from each pitch to the nearest tone of the scale."""
    cents = np.mod(np.asarray(semis) * 100.0, 1200.0)
    tones = np.array([*scale, 12]) * 100.0
    return np.min(np.abs(cents[..., None] - tones), axis=-1)


def _settled_chords(y: np.ndarray, root_hz: float) -> np.ndarray:
    """The voicing (semitones) at the end of each stretch where no voice moves."""
    semis = _semitones(y, root_hz)
    moving = np.any(np.abs(np.diff(semis, axis=1)) > 1e-9, axis=0)
    # The last frame of every still stretch that is followed by motion or the end.
    still_end = np.flatnonzero(~moving[:-1] & moving[1:])
    return semis[:, still_end].T


# chords ------------------------------------------------------------------------


@pytest.mark.parametrize("scale", sorted(SCALES))
def test_settled_chord_voices_are_scale_tones_spelling_a_chord(scale: str) -> None:
    root = 98.0
    y = _voices(
        "chords",
        90,
        voices=4,
        scale=scale,
        chord="seventh",
        root_hz=root,
        change_s=1.5,
        glide_s=0.4,
        fs=CONTROL_FS,
        block=1000,
    )
    chords = _settled_chords(y, root)
    assert len(chords) >= 55  # one per change_s
    # Every settled voice is on a scale tone, to 1 cent.
    assert _off_scale_cents(chords, SCALES[scale]).max() < 1.0
    # ...and the four voices spell the seventh chord of some scale degree: their
    # pitch classes are exactly the members stacked on that degree.
    steps = np.array(CHORDS["seventh"])
    tones = np.array(SCALES[scale])
    m = len(tones)
    spellings = {
        frozenset(int((tones[(d + s) % m]) % 12) for s in steps) for d in range(m)
    }
    for voicing in chords:
        classes = frozenset(round(float(s)) % 12 for s in voicing)
        assert classes in spellings, voicing


@pytest.mark.parametrize("fs", (44100, 48000))
@pytest.mark.parametrize("change_s", (0.7, 2.0))
def test_chords_change_every_change_s(fs: int, change_s: float) -> None:
    y = _voices("chords", 40, fs, voices=3, change_s=change_s, glide_s=0.2)
    semis = _semitones(y, 110.0)
    moving = np.any(np.abs(np.diff(semis, axis=1)) > 1e-9, axis=0)
    starts = np.flatnonzero(moving[1:] & ~moving[:-1]) + 1
    gaps = np.diff(starts)
    assert len(starts) >= int(40 / change_s) - 2
    # Every change: no repeat of the previous chord, exactly change_s apart.
    assert np.all(gaps == round(change_s * fs))


def test_glides_are_continuous_and_take_glide_s() -> None:
    glide_s = 0.8
    fs = CONTROL_FS
    y = _voices("chords", 60, fs, voices=4, change_s=2.0, glide_s=glide_s)
    semis = _semitones(y, 110.0)
    steps = np.abs(np.diff(semis, axis=1))
    moving = np.any(steps > 1e-9, axis=0)
    starts = np.flatnonzero(moving[1:] & ~moving[:-1]) + 1
    ends = np.flatnonzero(moving[:-1] & ~moving[1:]) + 1
    ends = ends[ends > starts[0]]
    n = min(len(starts), len(ends))
    durations = (ends[:n] - starts[:n]) / fs
    assert np.allclose(durations, glide_s, atol=2 / fs)
    # No step anywhere beyond the glide's steepest slope: a smoothstep over
    # glide_s peaks at 1.5x the mean slope of the largest move.
    chords = _settled_chords(y, 110.0)
    largest_move = np.abs(np.diff(chords, axis=0)).max()
    assert steps.max() <= 1.5 * largest_move / (glide_s * fs) * 1.001
    # ...so it is a glide, not a jump: far below one semitone per sample.
    assert steps.max() < 0.01


def test_voice_leading_is_smooth_and_keeps_voices_apart_near_the_register() -> None:
    root, register = 110.0, 330.0
    y = _voices(
        "chords",
        300,
        voices=5,
        change_s=1.0,
        glide_s=0.2,
        root_hz=root,
        register_hz=register,
        chord="triad",
        fs=CONTROL_FS,
        block=1000,
    )
    chords = _settled_chords(y, root)
    moves = np.abs(np.diff(chords, axis=0))
    # Each voice goes to a nearby chord tone: most moves are a step or two.
    assert np.mean(moves) < 2.5
    assert np.median(moves) <= 2.0
    # No two voices ever merge into a unison.
    pairwise = np.abs(chords[:, :, None] - chords[:, None, :])
    pairwise += np.eye(5)[None] * 99
    assert pairwise.min() >= 1.0
    # The voicing stays around register_hz: on average within a minor third of
    # it, never an octave away (without the pull home it wanders that far).
    centre = chords.mean(axis=1)
    target = 12 * np.log2(register / root)
    assert abs(np.mean(centre) - target) < 3.0
    assert np.abs(centre - target).max() < 10.0


def test_progression_never_loops_and_depends_on_the_seed() -> None:
    kwargs = {
        "voices": 3,
        "change_s": 0.25,
        "glide_s": 0.0,
        "block": 1000,
        "fs": CONTROL_FS,
    }
    a = _settled_chords(_voices("chords", 100, seed=1, **kwargs), 110.0)
    b = _settled_chords(_voices("chords", 100, seed=2, **kwargs), 110.0)
    assert len(a) >= 390
    # No period up to a quarter of the run: the voicing sequence is not a loop.
    for period in range(1, len(a) // 4):
        assert not np.array_equal(a[period:], a[:-period]), period
    n = min(len(a), len(b))
    assert np.mean(np.all(a[:n] == b[:n], axis=1)) < 0.5
    # The same seed gives the same progression.
    again = _settled_chords(_voices("chords", 100, seed=1, **kwargs), 110.0)
    assert np.array_equal(a, again)


def test_chords_drive_a_sine_bank_through_fm() -> None:
    """The wiring the node is for: frequency_hz 0, the chord on the fm input;
    the FFT peaks of a settled stretch are the chord's frequencies."""
    g = Graph()
    chord = g.node(
        "chords",
        name="chord",
        voices=3,
        change_s=4.0,
        glide_s=0.5,
        root_hz=130.81,
        scale="dorian",
    )
    bank = g.node("sine", name="bank", fm=chord, frequency_hz=0.0, amplitude=0.3)
    g.output(g.node("mix", bank))
    prog = compile_graph(g, FS, 512, 0)
    audio = render_graph(prog, 4 * FS, 512)[0]
    expected = _voices(
        "chords", 4, voices=3, change_s=4.0, glide_s=0.5, root_hz=130.81, scale="dorian"
    )[:, -1]
    window = audio[FS : 4 * FS] * np.hanning(3 * FS)
    spectrum = np.abs(np.fft.rfft(window, 8 * len(window)))
    freqs = np.fft.rfftfreq(8 * len(window), 1 / FS)
    peaks = (
        np.flatnonzero(
            (spectrum[1:-1] > spectrum[:-2]) & (spectrum[1:-1] > spectrum[2:])
        )
        + 1
    )
    loudest = np.sort(freqs[peaks[np.argsort(spectrum[peaks])[-3:]]])
    np.testing.assert_allclose(loudest, np.sort(expected), atol=0.05)


def test_chords_block_size_invariance() -> None:
    kwargs = {"voices": 4, "change_s": 0.3, "glide_s": 0.2, "root_hz": 87.3}
    renders = [_voices("chords", 3, block=b, **kwargs) for b in BLOCK_SIZES]
    for block, other in zip(BLOCK_SIZES[1:], renders[1:], strict=True):
        assert np.array_equal(renders[0], other), block


def test_chords_root_glides_with_its_smoothing() -> None:
    g = Graph()
    node = g.node("chords", name="gen", voices=3, change_s=100.0, root_hz=110.0)
    g.output(node[0])
    prog = compile_graph(g, FS, 256, 0)
    before = render_graph(prog, FS // 10, 256)[0]
    prog.set_target("gen", "root_hz", 220.0)
    after = render_graph(prog, FS // 2, 256)[0]
    # An octave up, reached smoothly: no step bigger than a tiny fraction.
    assert after[-1] == pytest.approx(2 * before[-1], rel=1e-6)
    joined = np.concatenate([before, after])
    assert np.abs(np.diff(np.log2(joined))).max() < 0.01


def test_chord_errors_name_the_option() -> None:
    g = Graph()
    g.output(g.node("chords", name="pad", voices=3, scale="dorain"))
    with pytest.raises(
        GraphError, match=r"pad \(chords\).*dorain.*did you mean 'dorian'"
    ):
        compile_graph(g)
    g = Graph()
    g.output(g.node("chords", name="pad", voices=3, chord="ninth"))
    with pytest.raises(GraphError, match=r"pad \(chords\).*ninth"):
        compile_graph(g)
    g = Graph()
    g.output(g.node("chords", name="pad", root_hz=[110.0, 220.0]))
    with pytest.raises(GraphError, match=r"root_hz is chord-wide.*voices"):
        compile_graph(g)


# melody ------------------------------------------------------------------------


def _notes(audio: np.ndarray, fs: int, floor_db: float = -40.0):
    """(start, end) frames of each note: stretches whose 2 ms envelope is above
    ``floor_db`` re the loudest, split where it dips between notes."""
    hop = int(0.002 * fs)
    frames = len(audio) // hop
    env = np.sqrt(np.mean(audio[: frames * hop].reshape(frames, hop) ** 2, axis=1))
    loud = env > env.max() * 10 ** (floor_db / 20)
    edges = np.diff(loud.astype(int))
    starts = np.flatnonzero(edges == 1) + 1
    ends = np.flatnonzero(edges == -1) + 1
    if loud[0]:
        starts = np.concatenate([[0], starts])
    ends = ends[ends > starts[0]]
    n = min(len(starts), len(ends))
    return [(s * hop, e * hop) for s, e in zip(starts[:n], ends[:n], strict=True)]


def _pitch_hz(x: np.ndarray, fs: int) -> float:
    """Frequency of the loudest FFT peak (Hann, 8x zero padding, parabolic
    interpolation of the log magnitude)."""
    n = 8 * len(x)
    spectrum = np.log(np.abs(np.fft.rfft(x * np.hanning(len(x)), n)) + 1e-300)
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = spectrum[k - 1 : k + 2]
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * fs / n


# Note separation for measuring: short attack and release, notes half joined.
_SEPARATE = {"attack_ms": 5.0, "release_ms": 25.0, "legato": 0.55}


@pytest.mark.parametrize(
    ("scale", "root_hz", "low_hz", "high_hz"),
    [
        ("major", 220.0, 200.0, 700.0),
        ("pentatonic_minor", 146.83, 300.0, 1200.0),
        ("dorian", 261.63, 150.0, 400.0),
    ],
)
def test_melody_notes_are_in_scale_and_register(
    scale: str, root_hz: float, low_hz: float, high_hz: float
) -> None:
    audio = render_graph(
        _melody_graph(
            scale=scale,
            root_hz=root_hz,
            low_hz=low_hz,
            high_hz=high_hz,
            density_hz=1.5,
            **_SEPARATE,
        ),
        60 * FS,
        1000,
        FS,
    )[0]
    notes = _notes(audio, FS)
    assert len(notes) > 50
    pitches = []
    for start, end in notes:
        length = end - start
        sustain = audio[start + length // 5 : end - length // 5]
        pitches.append(_pitch_hz(sustain, FS))
    pitches = np.array(pitches)
    semis = _semitones(pitches, root_hz)
    assert _off_scale_cents(semis, SCALES[scale]).max() < 10.0
    cents = 1200 * np.log2(pitches)
    assert cents.min() > 1200 * np.log2(low_hz) - 10.0
    assert cents.max() < 1200 * np.log2(high_hz) + 10.0
    # It is a melody: several different notes, mostly moving by small steps.
    assert len(np.unique(np.round(semis))) >= 5
    moves = np.abs(np.diff(np.round(semis)))
    assert np.mean(moves <= 4) > 0.7


def _melody_graph(**settings) -> Graph:
    g = Graph()
    g.output(g.node("melody", name="line", **settings))
    return g


@pytest.mark.parametrize("density_hz", (0.8, 3.0))
def test_melody_note_rate_follows_density(density_hz: float) -> None:
    seconds = 90
    audio = render_graph(
        _melody_graph(density_hz=density_hz, **_SEPARATE), seconds * FS, 1000, FS
    )[0]
    rate = len(_notes(audio, FS)) / seconds
    assert rate == pytest.approx(density_hz, rel=0.15)


def _peak_ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Largest normalized cross-correlation over all lags."""
    n = len(a) + len(b)
    xc = np.fft.irfft(np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n)), n)
    return float(np.abs(xc).max() / np.sqrt(np.sum(a * a) * np.sum(b * b)))


def test_melody_never_repeats_and_seeds_differ() -> None:
    fs = 16000  # the cross-correlations are of minutes: keep them small
    a = render_graph(_melody_graph(density_hz=2.0), 120 * fs, 1000, fs, seed=1)[0]
    b = render_graph(_melody_graph(density_hz=2.0), 60 * fs, 1000, fs, seed=2)[0]
    minute1, minute2 = a[: 60 * fs], a[60 * fs :]
    # The check can fail: a minute against itself shifted correlates fully.
    assert _peak_ncc(minute1, np.roll(minute1, 12345)) > 0.9
    assert _peak_ncc(minute1, minute2) < 0.3
    assert _peak_ncc(minute1, b) < 0.3
    again = render_graph(_melody_graph(density_hz=2.0), 60 * fs, 1000, fs, seed=1)[0]
    assert np.array_equal(again, minute1)


def test_melody_lines_are_independent_and_level_follows_amplitude() -> None:
    y = _voices(
        "melody", 20, voices=2, amplitude=[0.1, 0.4], density_hz=2.0, block=1000
    )
    assert 0.05 < np.abs(y[0]).max() <= 0.1 * 4
    assert np.abs(y[1]).max() > 2 * np.abs(y[0]).max()
    assert _peak_ncc(y[0], y[1]) < 0.3


def test_melody_block_size_invariance() -> None:
    renders = [
        _voices("melody", 4, voices=2, density_hz=6.0, block=b) for b in BLOCK_SIZES
    ]
    assert np.abs(renders[0]).max() > 0.05
    for block, other in zip(BLOCK_SIZES[1:], renders[1:], strict=True):
        assert np.array_equal(renders[0], other), block


def test_melody_starts_from_silence_and_stays_finite() -> None:
    audio = render_graph(
        _melody_graph(density_hz=8.0, attack_ms=0.0), 30 * FS, 512, FS
    )[0]
    assert np.all(np.isfinite(audio))
    assert audio[0] == 0.0
    # Four overlapping notes at most, each at most amplitude: bounded.
    assert np.abs(audio).max() <= 4 * 0.25


def test_melody_errors_name_the_option() -> None:
    g = Graph()
    g.output(g.node("melody", name="tune", scale="pentatonic"))
    with pytest.raises(GraphError, match=r"tune \(melody\).*pentatonic.*did you mean"):
        compile_graph(g)
    g = Graph()
    g.output(g.node("melody", name="tune", low_hz=900.0, high_hz=300.0))
    with pytest.raises(GraphError, match=r"tune \(melody\).*high_hz.*below low_hz"):
        compile_graph(g)


def test_a_scene_file_plays_a_pad_and_a_melody(tmp_path) -> None:
    """The nodes as a sound designer writes them: chords into a saw bank's fm."""
    from engine.scenes.format import load_scene_file

    scene = tmp_path / "dusk.yaml"
    scene.write_text(
        "name: dusk\n"
        "description: a pad and a line in D dorian\n"
        "layers:\n"
        "  pad:\n"
        "    nodes:\n"
        "      chord: {type: chords, voices: 4, scale: dorian, root_hz: 73.42,\n"
        "              register_hz: 220, change_s: 2, glide_s: 0.5}\n"
        "      saws: {type: saw, fm: chord, frequency_hz: 0, amplitude: 0.1}\n"
        "      soft: {type: ladder, in: saws, cutoff_hz: 900}\n"
        "      sum: {type: mix, in: soft}\n"
        "    output: sum\n"
        "  line:\n"
        "    nodes:\n"
        "      tune: {type: melody, scale: dorian, root_hz: 293.66, density_hz: 2}\n"
        "    output: tune\n"
    )
    _, graph = load_scene_file(scene)
    audio = render_graph(graph, 5 * FS, 512, FS)
    assert np.all(np.isfinite(audio))
    assert 0.01 < np.sqrt(np.mean(audio**2)) < 1.0
