"""The desktop stream's decisions that need no X server: sizes, bitrates, the negotiated
codec, the link estimate from RTCP feedback, and the quality presets."""

from __future__ import annotations

import math

import av
import numpy
import pytest

from desktop_proxy.congestion import LinkEstimate, RateMeter, SendBudget
from desktop_proxy.encoding import (
    EncoderUnavailable,
    H264Encoder,
    NvencH264Encoder,
    bitrate_range,
    h264_encoder,
    nvenc_unavailable,
    to_yuv420,
)
from desktop_proxy.peers import negotiated_video_codec
from desktop_proxy.presets import PRESETS, encoded_scale
from desktop_proxy.stream import ScreenStream
from desktop_proxy.xdisplay import fit_size


def test_sizes_are_even_within_limits_and_keep_the_aspect_when_too_large():
    assert fit_size(1366, 768) == (1366, 768)
    assert fit_size(1365.6, 767.2) == (1364, 766)
    assert fit_size(7680, 4320) == (3840, 2160)
    assert fit_size(5000, 3000) == (3600, 2160)
    assert fit_size(100, 50) == (640, 480)


def test_bitrates_grow_with_pixels_and_frame_rate():
    hd, uhd = bitrate_range(1920, 1080), bitrate_range(3840, 2160)
    assert (hd.low, hd.start, hd.high) == (600_000, 4_000_000, 8_000_000)
    assert 2 * hd.start < uhd.start < 4 * hd.start and hd.low < uhd.low < 4 * hd.low
    assert hd.start < bitrate_range(1920, 1080, fps=60).start < 2 * hd.start
    assert hd.clamp(50e6) == hd.high and hd.clamp(1) == hd.low


def test_the_codec_is_the_first_payload_of_the_answers_video_section():
    answer = ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n"
              "m=video 9 UDP/TLS/RTP/SAVPF 102 96\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:102 H264/90000\r\n")
    assert negotiated_video_codec(answer) == "H264"
    assert negotiated_video_codec(answer.replace("SAVPF 102 96", "SAVPF 96 102")) == "VP8"
    with pytest.raises(ValueError):
        negotiated_video_codec("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n")


def test_an_odd_sized_grab_is_cropped_to_even_and_encodes_to_a_key_frame_then_a_small_one():
    bgra = numpy.zeros((481, 641, 4), numpy.uint8)
    bgra[..., 2] = 255  # red
    frame = to_yuv420(bgra)
    assert (frame.width, frame.height) == (640, 480)
    encoder = H264Encoder(640, 480, 30, 1_000_000)
    first, first_key = encoder.encode(frame, 0)
    again, again_key = encoder.encode(to_yuv420(bgra), 3000)
    assert first_key and first.startswith(b"\x00\x00\x00\x01") and not again_key
    assert len(again) < 200 < len(first)  # an unchanged picture costs almost nothing
    encoder.request_keyframe()
    _, key = encoder.encode(to_yuv420(bgra), 6000)
    assert key


def test_x264_keeps_a_constant_quality_and_the_bitrate_is_only_its_ceiling():
    """A desktop is mostly still: the bits go where the picture changes, up to the link's
    ceiling, and are not spent refining what stands still (an average-bitrate encoder does)."""
    rng = numpy.random.default_rng(3)
    y, x = numpy.mgrid[0:720, 0:1280]
    desk = numpy.zeros((720, 1280, 4), numpy.uint8)
    desk[..., 0], desk[..., 1], desk[..., 2] = (x // 5) % 255, (y // 3) % 255, 128
    desk[100:600:16, 100:1100] = 255  # lines of "text"

    def sizes(encoder, pictures):
        return [len(encoder.encode(to_yuv420(p), n * 3000)[0]) for n, p in enumerate(pictures)]

    # A plot redrawn in each frame over a still desktop costs what it needs, whatever the
    # ceiling (an average-bitrate encoder spent 2.9 Mbit/s under 4 and 4.1 under 20).
    def plot(n):
        picture = desk.copy()
        xs = numpy.arange(800)
        ys = (300 + 200 * numpy.exp(-xs / 400) * numpy.sin(xs / 30 - n / 5)).astype(int)
        picture[50:600, 300:1100] = 255
        for d in (-1, 0, 1):
            picture[50 + numpy.clip(ys + d, 0, 549), 300 + xs, :3] = (180, 119, 31)
        return picture
    plots = [plot(n) for n in range(40)]
    under_4, under_20 = (sum(sizes(H264Encoder(1280, 720, 30, ceiling), plots)[10:]) * 8 for ceiling in (4e6, 2e7))
    assert under_4 < 2e6 and abs(under_20 - under_4) < 0.05 * under_4, (under_4, under_20)
    # Noise (a full-screen change) reaches the ceiling and stays under it.
    noise = [rng.integers(0, 256, (720, 1280, 4), numpy.uint8) for _ in range(30)]
    coded = sizes(H264Encoder(1280, 720, 30, 2_000_000), noise)
    assert 0.7 * 2_000_000 < sum(coded[1:]) * 8 / 29 * 30 <= 1.1 * 2_000_000, coded
    # A finer quality costs more bits for the same pictures, and takes effect at once.
    encoder = H264Encoder(1280, 720, 30, 20_000_000)
    coarse = sum(sizes(encoder, plots[:10]))
    encoder.retarget(20_000_000, crf=14)
    fine = sum(sizes(encoder, plots[:10]))
    assert encoder.crf == 14 and fine > 1.5 * coarse


def test_a_falling_remb_below_the_sending_rate_caps_it_and_the_cap_grows_back_slowly():
    link = LinkEstimate(ceiling=8e6)
    link.on_remb(6_000_000, sending=2e6, now=0.0)  # above what is sent: says nothing about the path
    assert link.cap == math.inf
    link.on_remb(6_000_000, sending=8e6, now=0.5)  # below a burst, but not falling: a burst after stillness
    assert link.cap == math.inf
    link.on_remb(1_000_000, sending=4e6, now=1.0)  # falling and below: the path is full
    assert link.cap == 1_000_000 and link.drops == 1
    link.on_remb(3_000_000, sending=1e6, now=1.5)  # the link carries what is sent: grow, 20%/s
    assert link.cap == pytest.approx(1_000_000 * 1.2 ** 0.5)
    link.on_remb(3_000_000, sending=1e6, now=1.6)  # many reports a second do not add up to more
    assert link.cap == pytest.approx(1_000_000 * 1.2 ** 0.6)
    link.on_remb(900_000, sending=0.5e6, now=2.0)  # REMB below the cap while sending little: keep it
    assert link.cap == pytest.approx(1_000_000 * 1.2 ** 0.6)
    for second in range(3, 30):
        link.on_remb(20_000_000, sending=link.cap if link.cap < math.inf else 8e6, now=float(second))
    assert link.cap == math.inf


def test_heavy_loss_lowers_the_cap_and_light_loss_does_not():
    link = LinkEstimate(ceiling=8e6)
    link.on_loss(int(0.05 * 256), sending=4e6)
    assert link.cap == math.inf
    link.on_loss(int(0.30 * 256), sending=4e6)
    assert 3.3e6 < link.cap < 3.5e6


def test_the_rate_meter_counts_the_last_second():
    meter = RateMeter(window=1.0)
    meter.add(1000, now=10.0)
    meter.add(1000, now=10.5)
    assert meter.rate(now=10.6) == 16000
    assert meter.rate(now=11.2) == 8000


def test_the_send_budget_is_full_beyond_its_queue_and_says_when_it_drained():
    budget = SendBudget(queue=0.05)
    budget.add(10_000, 1e6, now=0.0)  # 80 ms of a 1 Mbit/s link
    assert budget.full(1e6, now=0.0)
    assert budget.drain_time(1e6, now=0.0) == pytest.approx(0.03)
    assert budget.drain_time(1e6, now=0.02) == pytest.approx(0.01)
    assert not budget.full(1e6, now=0.031) and budget.drain_time(1e6, now=0.031) == 0.0
    assert budget.drain_time(math.inf) == 0.0 and not budget.full(math.inf)


def test_presets_set_frame_rate_bitrate_and_encoded_size():
    stream = ScreenStream(":0", 3840, 2160)  # no thread starts before a viewer attaches
    assert (stream.fps, stream.encoded_size, stream.motion_size) == (60, (3840, 2160), (3840, 2160))
    assert stream.target_bitrate == bitrate_range(3840, 2160, 60).start
    stream.set_preset(PRESETS["smooth-motion"])  # 4K motion encoded at 1080p, at 60 fps
    assert (stream.fps, stream.encoded_size, stream.motion_size) == (60, (3840, 2160), (1920, 1080))
    assert stream.motion_bitrate == bitrate_range(1920, 1080, 60).start
    stream.set_preset(PRESETS["sharp-text"])
    assert (stream.fps, stream.encoded_size, stream.motion_size) == (30, (3840, 2160), (3840, 2160))
    assert stream.target_bitrate == int(1.5 * bitrate_range(3840, 2160, 30).start)
    stream.set_preset(PRESETS["low-bandwidth"])
    assert stream.fps == 20 and stream.target_bitrate == int(0.25 * bitrate_range(3840, 2160, 20).start)
    # The bitrate is a ceiling; below it, each preset's quality.
    assert [PRESETS[name].crf for name in ("sharp-text", "auto", "low-bandwidth")] == [20, 23, 28]


def test_a_slow_link_lowers_the_bitrate_then_the_encoded_size_and_both_come_back():
    stream = ScreenStream(":0", 1920, 1080)
    floor = bitrate_range(1920, 1080, 60).low
    # The encoder aims below the link: key frames and retransmissions ride on top.
    assert stream.set_link(3_000_000) == int(0.85 * 3_000_000) and stream.encoded_size == (1920, 1080)
    stream.set_link(floor * 0.3)  # far below what 1080p needs: encoded at half size
    assert stream.encoded_size == (960, 540)
    assert stream.target_bitrate == bitrate_range(960, 540, 60).clamp(0.85 * floor * 0.3)
    stream.set_preset(PRESETS["sharp-text"])  # never smaller: blurrier instead
    assert stream.encoded_size == (1920, 1080)
    stream.set_preset(PRESETS["auto"])
    stream.set_link(math.inf)
    assert stream.encoded_size == (1920, 1080) and stream.target_bitrate == bitrate_range(1920, 1080, 60).start
    assert encoded_scale(PRESETS["auto"], 1920, 1080, floor * 0.7, floor) == 0.75


def test_nvenc_is_used_where_there_is_one_and_asking_for_it_elsewhere_says_why():
    reason = nvenc_unavailable()  # this machine's answer: CI has no NVIDIA GPU
    assert h264_encoder("x264") is H264Encoder
    if reason:
        assert h264_encoder("auto") is H264Encoder  # falls back to software
        with pytest.raises(EncoderUnavailable, match="NVENC was asked for, but this machine has no NVIDIA"):
            h264_encoder("nvenc")
    else:
        assert h264_encoder("auto") is h264_encoder("nvenc") is NvencH264Encoder
    with pytest.raises(EncoderUnavailable, match="unknown encoder 'qsv'"):
        h264_encoder("qsv")
    # NVENC's settings: low latency, constant bitrate, no B-frames, the browser-safe profile.
    options = NvencH264Encoder(1920, 1080, 60, 4_000_000)._options()
    assert (options["tune"], options["rc"], options["bf"], options["profile"]) == ("ull", "cbr", "0", "baseline")


def test_the_playout_delay_extension_is_packed_in_tens_of_milliseconds_and_sent_once_negotiated():
    from aiortc import rtp
    from aiortc.codecs import HEADER_EXTENSIONS
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters

    from desktop_proxy.playout_delay import (
        URI,
        _ExtensionsWithPlayoutDelay,
        encode,
        offer_playout_delay,
        send_playout_delay,
    )

    assert encode(0, 50) == bytes([0x00, 0x00, 0x05])
    assert encode(100, 200) == ((10 << 12) | 20).to_bytes(3, "big")
    assert encode(0, 10 ** 6) == bytes([0x00, 0x0F, 0xFF])  # 12 bits at most
    with pytest.raises(ValueError, match="below its minimum"):
        encode(100, 50)
    with pytest.raises(ValueError, match="must be above 0"):
        send_playout_delay(None, 0, 0)  # Chromium would drop all but the newest picture

    offer_playout_delay()
    offer_playout_delay()  # once only
    video = HEADER_EXTENSIONS["video"]
    assert [e.uri for e in video].count(URI) == 1 and len({e.id for e in video}) == len(video)

    extensions = _ExtensionsWithPlayoutDelay(encode(0, 50))
    mid = RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid")
    values = rtp.HeaderExtensions(mid="0")
    # Not negotiated (the browser did not offer it): the packets are aiortc's own.
    extensions.configure(RTCRtpParameters(headerExtensions=[mid]))
    assert rtp.unpack_header_extensions(*extensions.set(values)) == [(1, b"0")]
    # Negotiated with the browser's id: on every packet, beside aiortc's extensions.
    extensions.configure(RTCRtpParameters(headerExtensions=[mid, RTCRtpHeaderExtensionParameters(id=12, uri=URI)]))
    assert rtp.unpack_header_extensions(*extensions.set(values)) == [(1, b"0"), (12, b"\x00\x00\x05")]
    assert rtp.unpack_header_extensions(*extensions.set(rtp.HeaderExtensions())) == [(12, b"\x00\x00\x05")]


def test_the_encoders_frame_rate_moves_in_steps_and_does_not_flip_between_them():
    from desktop_proxy.stream import budget_rate

    assert budget_rate(60, 58, 60) == 60
    assert budget_rate(60, 45, 60) == budget_rate(60, 40, 60) == 60  # 40 and 45 fps are budgeted alike
    assert budget_rate(60, 20, 60) == 30 and budget_rate(60, 5, 60) == 15
    assert budget_rate(30, 33, 60) == 30  # within 15%: no new key frame
    assert budget_rate(30, 36, 60) == 60 and budget_rate(15, 25, 60) == 30
    assert budget_rate(60, 58, 30) == 30 and budget_rate(30, 25, 20) == 20  # the preset's cap
    # A 30 fps animation is budgeted as 30, not given half its bits (budgeted as 60).
    assert budget_rate(60, 30.5, 60) == 30 and budget_rate(30, 15.5, 60) == 15
    # A screen wavering between 32 and 36 changes a second, or between 27 and 34, settles on
    # one step.
    for rate, wavering in ((30, [33, 36, 32, 34, 35, 32, 34, 33]), (60, [33, 31, 27, 34, 30, 28, 34, 29])):
        changes = 0
        for measured in wavering * 3:
            new = budget_rate(rate, measured, 60)
            changes, rate = changes + (new != rate), new
        assert changes == 1, wavering
    # Whatever the step was, the encoder never budgets for much fewer frames than come: its
    # bitrate, the link's share, would be exceeded by as much (with the nearest step, by up
    # to 50%: 21 frames a second budgeted as 15, at 3840x2160).
    for current in (15, 20, 30, 60):
        for measured in range(1, 61):
            for cap in (20, 30, 60):
                assert 1.15 * budget_rate(current, measured, cap) >= min(measured, cap), (current, measured, cap)


@pytest.mark.parametrize("width, height", [(3840, 2160), (1282, 722)])
def test_converting_only_what_changed_gives_the_picture_a_whole_conversion_gives(width, height):
    from desktop_proxy.encoding import YuvScreen

    rng = numpy.random.default_rng(7)
    screen = rng.integers(0, 256, (height, width, 4), dtype=numpy.uint8)
    yuv = YuvScreen()
    assert numpy.array_equal(yuv.update(screen, None).to_ndarray(), to_yuv420(screen).to_ndarray())
    areas = [(64, 128, 256, 128), (0, 0, 64, 64), (width - 130, height - 66, 130, 66)]
    for x, y, w, h in areas:
        screen[y:y + h, x:x + w] = rng.integers(0, 256, (h, w, 4), dtype=numpy.uint8)
    assert numpy.array_equal(yuv.update(screen, areas).to_ndarray(), to_yuv420(screen).to_ndarray())
    # A change the screen-sized picture did not see: all of it is converted next time.
    screen[300:310] = 255
    yuv.forget()
    assert numpy.array_equal(yuv.update(screen, [(0, 0, 64, 64)]).to_ndarray(), to_yuv420(screen).to_ndarray())
    # And the planes are in their places: a red and blue screen as swscale converts it.
    screen[:, :] = (255, 0, 0, 255)  # blue
    screen[:, : width // 4 * 2] = (0, 0, 255, 255)  # red, up to a whole block of colour
    reference = av.VideoFrame.from_ndarray(screen, format="bgra").reformat(format="yuv420p").to_ndarray()
    assert numpy.abs(yuv.update(screen, None).to_ndarray().astype(int) - reference).max() <= 2


def test_the_capture_keeps_to_its_frame_rate_without_falling_behind_an_application_at_the_same_rate():
    from desktop_proxy.stream import next_grab_after

    def waits(pictures: list[float], interval: float = 1 / 60) -> list[float]:
        """How long each picture (drawn at these times) waits for its grab."""
        due, waited = 0.0, []
        for drawn in pictures:
            started = max(drawn, due)
            waited.append(started - drawn)
            due = next_grab_after(due, started, interval)
        return waited

    # An application at 60 Hz whose pictures come up to 6 ms late now and then: once a late
    # one has passed, pictures are grabbed when drawn (grabbing at one interval after each
    # grab, every later picture would wait 6 ms).
    late = [n / 60 + (0.006 if n % 25 == 7 else 0.0) for n in range(120)]
    assert max(waits(late)[8:]) < 1e-9
    # Pictures late by up to 4 ms (a quarter of an interval), at random: none waits.
    rng = numpy.random.default_rng(7)
    jittery = [n / 60 + rng.uniform(0, 0.004) for n in range(600)]
    assert max(waits(jittery)) < 1e-9
    # A screen that changes all the time is grabbed at most 60 times a second on average.
    continuous = [n / 240 for n in range(2400)]  # 10 s of damage at 240 Hz
    due, grabs = 0.0, 0
    for drawn in continuous:
        if drawn >= due:
            grabs += 1
            due = next_grab_after(due, drawn, 1 / 60)
    assert 595 <= grabs <= 602
