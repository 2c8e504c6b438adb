import pytest

from pipelines.annotate.prompts import label_text, photo_prompt, sound_prompt


@pytest.mark.parametrize(
    "names, expected",
    [
        (["Speech"], "Speech"),
        (["Speech", "Music"], "Speech and music"),
        # AudioLDM (§5, "Evaluation dataset") prints "Speech, hip hop music, and crowd cheering"
        (["Speech", "Hip hop music", "Crowd cheering"], "Speech, hip hop music, and crowd cheering"),
        (["dog barking"], "Dog barking"),  # VGGSound's lower-case labels
        (["Male_speech_and_man_speaking", "Bark"], "Male speech and man speaking and bark"),  # FSD50K vocabulary
        (["Music", "Music of Latin America"], "Music and music of Latin America"),  # proper nouns keep capitals
        (["Speech", "MP3 artefacts"], "Speech and MP3 artefacts"),  # acronyms too
    ],
)
def test_label_text(names, expected):
    assert label_text(names) == expected


def test_label_text_dedupes_keeps_order_and_handles_no_labels():
    assert label_text(["Dog", "Bark", "dog", " Bark "]) == "Dog and bark"
    assert label_text([]) is None
    assert label_text(["", "  "]) is None


def test_clipsonic_prompts():
    assert photo_prompt("playing cello") == "a photo of playing cello"
    assert photo_prompt("Dog") == "a photo of dog"
    assert sound_prompt("Church_bell") == "the sound of church bell"
