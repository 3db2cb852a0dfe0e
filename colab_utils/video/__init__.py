"""StarGAN v2 on video: stream a clip through the model with aligned, temporally smoothed faces and the
original sound.

    from colab_utils.video import translate_video
    summary = translate_video("talk.mp4", "talk_out.mp4", nets, reference="me.jpg", domain=1,
                              side_by_side="talk_compare.mp4", gif="talk_out.gif")
"""
from .faces import FaceTracker, OneEuroFilter
from .flicker import FlickerMeter, flicker
from .frame_model import FrameModel, StarGANFrameModel, to_tensor, to_uint8
from .translate import MODES, TranslatedFrame, VideoSummary, translate_frames, translate_video

__all__ = [
    "translate_video", "translate_frames", "VideoSummary", "TranslatedFrame", "MODES",
    "FrameModel", "StarGANFrameModel", "to_tensor", "to_uint8",
    "flicker", "FlickerMeter", "OneEuroFilter", "FaceTracker",
]
