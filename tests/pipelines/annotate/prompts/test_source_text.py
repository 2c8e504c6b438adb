import pytest

from pipelines.annotate.prompts import clean_source_text

GEAR_AND_LINKS = (
    "A small dog barking at the mailman. &quot;Woof&quot; &amp; growls.<br><br>"
    "Recorded with Sony PCM-D50<br>Mic: Rode NT4<br>96kHz / 24bit<br>"
    'Check out my other sounds at <a href="https://freesound.org/people/x/">https://freesound.org/people/x/</a>'
)


@pytest.mark.parametrize(
    "title, description, expected",
    [
        # file-name titles: extension, separators, numbering and recorder prefixes go
        ("rain_01.wav", None, "rain"),
        ("ZOOM0001_rain on roof.WAV", None, "rain on roof"),
        ("DogBarking-02.mp3", None, "Dog Barking"),
        ("DSC_0042.wav", "http://www.example.com", None),
        # Windows line ends, a gear line and a tag list
        (
            "20100422.thunder.wav",
            "Thunder storm rolling in over the hills.\r\n\r\nRecorded with a Zoom H4n.\r\n"
            "Tags: thunder, storm, rain\r\n",
            "Thunder storm rolling in over the hills.",
        ),
        # HTML entities and breaks, setup fields, specs, a link; the title is already said
        ("Dog barking", GEAR_AND_LINKS, 'A small dog barking at the mailman. "Woof" & growls.'),
        # BBCode, a BB link with its text, a hashtag run
        (
            "Birds",
            "[b]Morning birds[/b] in the park [url=https://example.com]my website[/url]\n"
            "#birds #nature #dawn #field-recording",
            "Morning birds in the park.",
        ),
        # the title adds what the description lacks; a URL in brackets and a spec sentence go
        (
            "Kitchen",
            "Cutting vegetables on a wooden board (see https://x.y/z ). Stereo, 44.1 kHz, 16 bit.",
            "Kitchen. Cutting vegetables on a wooden board.",
        ),
        # bullet lines become sentences; a single hashtag keeps its word
        (
            "Ambience",
            "- traffic passing\n- people talking\n* a #bus stopping",
            "Ambience. traffic passing. people talking. a bus stopping.",
        ),
        # abbreviations do not end a sentence; words that only look like boilerplate stay
        (
            "Mr. Smith talks",
            "Mr. Smith talks about the weather in London.",
            "Mr. Smith talks about the weather in London.",
        ),
        (
            "Mice squeaking",
            "Credit card machine beeping. Licence: CC0. Please credit me!",
            "Mice squeaking. Credit card machine beeping.",
        ),
        ("Church bell", "Church bell", "Church bell."),
        (None, None, None),
        ("", "Mic: Rode NT4\n#a #b", None),
    ],
)
def test_clean_source_text(title, description, expected):
    assert clean_source_text(title, description) == expected


def test_long_text_is_cut_at_a_sentence_or_a_word():
    sentence = "Wind blowing through the tall pine trees on a cold winter night. "
    text = clean_source_text(None, sentence * 5, max_chars=150)
    assert text == (sentence * 2).strip() and len(text) <= 150
    words = "waves crashing on the rocks while seagulls cry and children play " * 5
    cut = clean_source_text(None, words, max_chars=60)
    assert len(cut) <= 60 and words.startswith(cut) and words[len(cut)] == " "
