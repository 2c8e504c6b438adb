"""Label text: a clip's class names as one caption-like string, and the CLIPSonic prompt forms.

Casing follows AudioLDM's example (§5, "Evaluation dataset"): "*Speech, hip hop music, and
crowd cheering*" — the sentence starts upper-case and every later name starts lower-case. Ontology
names are sentence-cased ("Hip hop music", "Music of Latin America"), so only a name's first letter
is lowered: proper nouns further in keep their capitals, and a leading acronym ("MP3 ...") is kept.
"""

from __future__ import annotations

from collections.abc import Sequence


def clean_name(name: str) -> str:
    """FSD50K's vocabulary writes `Male_speech_and_man_speaking`; the text encoders want words."""
    return " ".join(name.replace("_", " ").split())


def inline_name(name: str) -> str:
    """A class name as it reads inside a sentence: first letter lower-cased unless it starts an acronym."""
    name = clean_name(name)
    first = name.split(" ", 1)[0]
    if not name or (len(first) > 1 and first.isupper()):
        return name
    return name[0].lower() + name[1:]


def distinct_names(names: Sequence[str]) -> list[str]:
    """Cleaned, non-empty names, each once (compared case-insensitively), in their first order."""
    seen: dict[str, str] = {}
    for name in map(clean_name, names):
        if name and name.casefold() not in seen:
            seen[name.casefold()] = name
    return list(seen.values())


def label_text(names: Sequence[str]) -> str | None:
    """The names joined with AudioLDM's serial comma (§5): 'Speech', 'Speech and music',
    'Speech, hip hop music, and crowd cheering'; None for a clip without labels."""
    words = [inline_name(name) for name in distinct_names(names)]
    if not words:
        return None
    if len(words) == 1:
        text = words[0]
    elif len(words) == 2:
        text = f"{words[0]} and {words[1]}"
    else:
        text = f"{', '.join(words[:-1])}, and {words[-1]}"
    return text[0].upper() + text[1:]


def photo_prompt(name: str) -> str:
    """CLIPSonic (§3, "Data"): labels become pseudo text "a photo of [label]"."""
    return f"a photo of {inline_name(name)}"


def sound_prompt(name: str) -> str:
    """CLIPSonic (§3, CLAP-TTA): "the sound of [label]" for CLAP's text encoder."""
    return f"the sound of {inline_name(name)}"
