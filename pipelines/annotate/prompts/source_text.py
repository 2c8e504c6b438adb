"""Uploader text (Freesound's `name` and `description`) → one caption candidate.

Freesound descriptions are free text written for people browsing the site: HTML or BBCode markup,
links, "Tags: …" lines and hashtag runs, recording-gear and licence boilerplate. What a text encoder
should see is the sentence about the sound, so those parts are removed, by line and by sentence.
Titles are often file names ("rain_01.wav"): the extension, separators and numbering go ("rain").
The title is put in front of the description when the description does not already say it, since
descriptions often tell how a sound was recorded but not what it is. The candidate is then scored
by CLAP like any other (pipelines/annotate/prompts/select.py), so leftovers that do not describe the audio
lose there.
"""

from __future__ import annotations

import html
import re

_URL = re.compile(r"(?:\b(?:https?|ftp)://|\bwww\.)\S+", re.IGNORECASE)
_BREAK = re.compile(r"<\s*(?:br|/?p|/?div|/?li|/?ul|/?ol|h\d|/h\d)\b[^>]*>", re.IGNORECASE)
_HTML_TAG = re.compile(r"</?[A-Za-z][^<>]{0,300}>")
# Links go with their text: on Freesound it is a URL, "here", or the uploader's other sounds.
_LINK = re.compile(r"\[(img|url)(?:=[^\]]*)?\].*?\[/\1\]|<a\b[^>]*>.*?</a\s*>", re.IGNORECASE | re.DOTALL)
_BB_TAG = re.compile(r"\[/?(?:b|i|u|s|url|quote|code|color|size|center|list|\*)(?:=[^\]]*)?\]", re.IGNORECASE)
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_HASHTAG_RUN = re.compile(r"(?:#\w[\w-]*[\s,;]*){2,}")
_HASHTAG = re.compile(r"#(\w)")
_TAG_LIST = re.compile(r"\b(?:tags?|keywords?)\s*:.*$", re.IGNORECASE)
# "Mic: Rode NT4", "Sample rate = 96 kHz": a field of the recording setup, not of the sound.
_SETUP_FIELD = re.compile(
    r"^(?:recorders?|microphones?|mics?|equipment|gear|software|daw|format|sample ?rate|bit ?depth|"
    r"licen[cs]e|copyright|credits?|attribution|file ?info)\s*[:=]",
    re.IGNORECASE,
)
_BOILERPLATE = re.compile(
    r"^(?:recorded (?:with|using)|edited (?:with|in|using)|processed (?:with|in|using)|please (?:credit|rate|"
    r"comment|leave)|if you (?:use|like)|follow me|check out|support me|(?:©|\(c\))\s)",
    re.IGNORECASE,
)
_SPEC = re.compile(
    r"\b\d+(?:[.,]\d+)?\s*(?:k?hz|bits?|kbps)\b|\b(?:stereo|mono|wav|mp3|flac|aiff?|ogg|\d+bit|khz|hz)\b",
    re.IGNORECASE,
)
_AUDIO_EXT = re.compile(r"\.(?:wav|wave|mp3|flac|aiff?|ogg|oga|opus|m4a|aac|wma)$", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(\w*)[.!?]+[\"')]*\s+(?=[A-Z\"'(])")
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "prof", "vs", "etc", "eg", "ie", "approx", "no", "ca", "feat"}
_LEFTOVER = re.compile(r"\((?:\s*(?:see|at|via|on|from|here)\b)?\s*\)|\[\s*\]", re.IGNORECASE)  # around a removed link
# Recorder and camera prefixes and other words file names are made of ("ZOOM0001", "DSC_0042").
_FILE_WORDS = {
    "zoom",
    "dsc",
    "tascam",
    "rec",
    "img",
    "mvi",
    "audio",
    "track",
    "take",
    "sample",
    "untitled",
    "recording",
    "file",
    "final",
    "edit",
    "new",
    "stereo",
    "mono",
}
_WORD = re.compile(r"[^\W\d_]{3,}")  # a word of three letters or more: something to say


def clean_source_text(title: str | None, description: str | None, max_chars: int = 200) -> str | None:
    """A caption candidate of at most `max_chars` characters, or None when nothing useful remains."""
    name = clean_title(title) if title else None
    body = clean_description(description) if description else None
    if name and body and name.casefold() not in body.casefold():
        text = f"{name}{'' if name[-1] in '.!?' else '.'} {body}"
    else:
        text = body or name
    return truncate(text, max_chars) if text else None


def clean_title(title: str) -> str | None:
    """ "Dog barking.wav" → "Dog barking"; "rain_01.wav", "ZOOM0001_rain" → "rain"."""
    text = " ".join(html.unescape(title).split())
    file_like = bool(_AUDIO_EXT.search(text)) or (" " not in text and bool(re.search(r"[_.]", text)))
    text = _AUDIO_EXT.sub("", text)
    if file_like:
        words = [_split_camel(word) for word in re.split(r"[\s_.\-]+", text) if word and not _file_noise(word)]
        text = " ".join(words)
    return text if _WORD.search(text) else None


def clean_description(description: str) -> str | None:
    """Markup, links, tag lists and setup boilerplate removed; kept lines joined as sentences."""
    text = _LINK.sub(" ", description)
    text = _BREAK.sub("\n", text)
    text = _HTML_TAG.sub(" ", text)
    text = _MD_LINK.sub(r"\1", _BB_TAG.sub(" ", text))
    text = _URL.sub(" ", html.unescape(text))
    sentences = [_clean_sentence(part) for line in text.splitlines() for part in _sentences(_strip_line(line))]
    return " ".join(_as_sentence(part) for part in sentences if part) or None


def truncate(text: str, max_chars: int) -> str:
    """Cut at the last sentence end within `max_chars` if that keeps a third of it, else at a word."""
    if len(text) <= max_chars:
        return text
    head = text[: max_chars + 1]
    ends = [match.end() for match in re.finditer(r"[.!?](?=\s|$)", head) if match.end() <= max_chars]
    if ends and ends[-1] >= max_chars // 3:
        return head[: ends[-1]]
    cut = head.rfind(" ")
    head = head[:cut] if cut > 0 else head[:max_chars]
    return head.rstrip(" ,;:-–—")


def _strip_line(line: str) -> str:
    line = _TAG_LIST.sub("", _HASHTAG_RUN.sub(" ", line))
    line = _LEFTOVER.sub("", _HASHTAG.sub(r"\1", line))
    return re.sub(r"\s+([,.;:!?)])", r"\1", " ".join(line.split())).lstrip("-*•>·~=# ")


def _sentences(line: str) -> list[str]:
    """Split at sentence ends, not after "Mr.", "e.g." or an initial."""
    parts, start = [], 0
    for match in _SENTENCE_END.finditer(line):
        word = match.group(1).casefold()
        if len(word) != 1 and word not in _ABBREVIATIONS:
            parts.append(line[start : match.end()])
            start = match.end()
    return parts + [line[start:]]


def _clean_sentence(text: str) -> str:
    """The sentence, or "" for setup boilerplate ("Mic: …", "Stereo, 44.1 kHz.") and leftovers."""
    text = text.strip()
    if _SETUP_FIELD.match(text) or _BOILERPLATE.match(text) or not _WORD.search(_SPEC.sub(" ", text)):
        return ""
    return text


def _as_sentence(text: str) -> str:
    """Lines joined read as sentences: a line without an end mark gets a full stop."""
    return text if text.rstrip("\"')")[-1:] in (".", "!", "?") else text.rstrip(",;:-–— ") + "."


def _file_noise(word: str) -> bool:
    """Numbers, dates, recorder counters ("01", "20100422", "ZOOM0001") and recorder prefixes ("DSC")."""
    digits = sum(char.isdigit() for char in word)
    return digits * 2 >= len(word) or word.casefold() in _FILE_WORDS


def _split_camel(word: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", word)
