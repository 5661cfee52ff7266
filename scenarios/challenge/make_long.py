#!/usr/bin/env python3
"""Generate long_context.yaml: a pronoun/referent test placed after
~0 / 100 / 500 / 1000 / 2000 tokens of distractor text.

The distractor text is built from sentence templates over a few hundred
lowercase Russian / English words (deterministic seed).  It never contains
the pronouns, referents, cue words or the connective of the test sentence
(checked below, case-insensitively), and never contains '?'.

Usage:  python3 make_long.py            (writes long_context.yaml next to this script)
"""
import os
import random

import yaml

SEED = 1729
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "long_context.yaml")

class NoAliasDumper(yaml.SafeDumper):
    """Write repeated lists out in full instead of YAML anchors/aliases."""
    def ignore_aliases(self, data):
        return True


# ---------------------------------------------------------------- Russian words
RU = dict(
    adj=("старый молодой тихий усталый весёлый хмурый высокий низкий рыжий седой "
         "добрый строгий храбрый сонный бодрый деревянный каменный новый дальний "
         "северный южный осенний зимний летний весенний длинный короткий тёплый "
         "холодный тяжёлый лёгкий синий зелёный жёлтый белый чёрный").split(),
    subj=("рыбак кузнец пастух учитель садовник плотник моряк мельник почтальон "
          "лесник сторож повар художник музыкант купец охотник портной пекарь "
          "водитель инженер доктор студент сосед путник странник").split(),
    verb=("чинил красил нёс искал продал купил строил видел рисовал чистил "
          "открыл закрыл поднял уронил нашёл потерял грузил мыл двигал точил "
          "поправил осматривал").split(),
    obj=("забор мост стол стул шкаф ящик котёл топор молоток фонарь ковёр "
         "сундук плот парус якорь камень мешок кувшин зонт пояс замок ключ "
         "колокол самовар чемодан").split(),
    place=["у реки", "в городе", "на рынке", "за сараем", "у дороги", "в саду",
           "на площади", "у колодца", "в гавани", "на холме", "в деревне",
           "у моста", "на берегу", "в долине", "за лесом", "у ворот",
           "на станции", "в мастерской", "на пристани", "у мельницы"],
    time=["утром", "вечером", "вчера", "зимой", "летом", "осенью", "весной",
          "ночью", "днём", "на рассвете", "в полдень", "в субботу",
          "перед обедом", "после ужина"],
    verb_pl=["гуляли", "спорили", "отдыхали", "работали", "пели", "молчали",
             "смеялись", "торговали", "ждали", "беседовали"],
    weather=["тихо", "холодно", "ветрено", "солнечно", "сыро", "душно",
             "пасмурно", "шумно", "спокойно", "морозно"],
)


def ru_sentence(r):
    a, s, v, o = r.choice(RU["adj"]), r.choice(RU["subj"]), r.choice(RU["verb"]), r.choice(RU["obj"])
    t = r.randrange(6)
    if t == 0:
        w = f"{r.choice(RU['time'])} {a} {s} {v} {r.choice(RU['adj'])} {o} {r.choice(RU['place'])}"
    elif t == 1:
        w = f"{a} {s} {v} {o}"
    elif t == 2:
        s2 = r.choice([x for x in RU["subj"] if x != s])
        w = f"{s} и {s2} {r.choice(RU['verb_pl'])} {r.choice(RU['place'])}"
    elif t == 3:
        w = f"{r.choice(RU['time'])} {r.choice(RU['place'])} было {r.choice(RU['weather'])}"
    elif t == 4:
        w = f"{s} долго {v} {a} {o}"
    else:
        w = f"{r.choice(RU['place'])} {a} {s} {v} {o} {r.choice(RU['time'])}"
    return w.split() + ["."]


# ---------------------------------------------------------------- English words
EN = dict(
    adj=("old young quiet tired cheerful gloomy tall short clever careful brave "
         "sleepy busy wooden stone new distant northern southern golden silver "
         "heavy light blue green yellow white black small large dusty shiny "
         "ancient rusty narrow wide").split(),
    subj=("farmer sailor teacher baker gardener carpenter miller postman ranger "
          "guard cook painter musician merchant hunter tailor driver engineer "
          "doctor student neighbour traveller fisherman blacksmith shepherd").split(),
    verb=("repaired painted carried found sold bought built noticed cleaned "
          "opened closed lifted dropped lost loaded washed moved sharpened "
          "inspected polished borrowed mended").split(),
    obj=("fence bridge table chair cupboard crate kettle axe hammer lantern "
         "carpet chest raft sail anchor stone sack jug umbrella belt lock "
         "bell wagon barrel ladder").split(),
    place=["near the river", "in the town", "at the market", "behind the barn",
           "by the road", "in the garden", "on the square", "near the well",
           "in the harbour", "on the hill", "in the village", "by the mill",
           "on the shore", "in the valley", "beyond the forest", "at the gate",
           "at the station", "in the workshop", "on the pier", "under the oak"],
    time=["in the morning", "in the evening", "yesterday", "in winter",
          "in summer", "in autumn", "in spring", "at night", "at noon",
          "at dawn", "on saturday", "before lunch", "after dinner", "last week"],
    verb_i=["walked", "argued", "rested", "worked", "sang", "waited",
            "laughed", "traded", "talked", "danced"],
    weather=["calm", "cold", "windy", "sunny", "damp", "warm", "cloudy",
             "noisy", "peaceful", "frosty"],
)


def en_sentence(r):
    a, s, v, o = r.choice(EN["adj"]), r.choice(EN["subj"]), r.choice(EN["verb"]), r.choice(EN["obj"])
    t = r.randrange(6)
    if t == 0:
        w = f"{r.choice(EN['time'])} the {a} {s} {v} a {r.choice(EN['adj'])} {o} {r.choice(EN['place'])}"
    elif t == 1:
        w = f"the {a} {s} {v} the {o}"
    elif t == 2:
        s2 = r.choice([x for x in EN["subj"] if x != s])
        w = f"the {s} and the {s2} {r.choice(EN['verb_i'])} {r.choice(EN['place'])}"
    elif t == 3:
        w = f"{r.choice(EN['time'])} the weather {r.choice(EN['place'])} was {r.choice(EN['weather'])}"
    elif t == 4:
        w = f"the {s} slowly {v} an {a} {o}"
    else:
        w = f"{r.choice(EN['place'])} a {a} {s} {v} the {o} {r.choice(EN['time'])}"
    return w.split() + ["."]


def distractor(r, make_sentence, target):
    """Whole sentences, stopping at the first sentence end at or after `target` tokens."""
    toks = []
    while len(toks) < target:
        toks += make_sentence(r)
    return toks


# ---------------------------------------------------------------- the test
RELATIONS = [
    "ОН = ПЁС + МЯЧ",
    "ГОЛОДНЫЙ = ПЁС",
    "РЕЗИНОВЫЙ = МЯЧ",
    "SHE = LUCY + EMMA",
    "HELPED = EMMA",
    "WORRIED = LUCY",
]
TESTS = {
    # key: (language, test sentence, expect, candidates)
    "ru_dog": ("ru", "ПЁС ГРЫЗЁТ МЯЧ ПОТОМУ ЧТО ОН ГОЛОДНЫЙ ОН ?", "ПЁС", ["ПЁС", "МЯЧ"]),
    "ru_ball": ("ru", "ПЁС ГРЫЗЁТ МЯЧ ПОТОМУ ЧТО ОН РЕЗИНОВЫЙ ОН ?", "МЯЧ", ["ПЁС", "МЯЧ"]),
    "en_emma": ("en", "LUCY THANKED EMMA BECAUSE SHE HELPED SHE ?", "EMMA", ["LUCY", "EMMA"]),
    "en_lucy": ("en", "LUCY CALLED EMMA BECAUSE SHE WORRIED SHE ?", "LUCY", ["LUCY", "EMMA"]),
}
# (target distractor length, test key); both answers of each language are covered,
# and at the longest length both answers are asked.
PLAN = [
    (0, "ru_dog"), (0, "en_emma"),
    (100, "ru_ball"), (100, "en_lucy"),
    (500, "ru_dog"), (500, "en_emma"),
    (1000, "ru_ball"), (1000, "en_lucy"),
    (2000, "ru_dog"), (2000, "en_emma"),
    (2000, "ru_ball"), (2000, "en_lucy"),
]


def check_vocab():
    test_tokens = set()
    for lang, text, exp, cands in TESTS.values():
        test_tokens |= set(text.split()) | {exp} | set(cands)
    test_tokens = {t.lower() for t in test_tokens}
    for lst in list(RU.values()) + list(EN.values()):
        for phrase in lst:
            for w in phrase.split():
                assert w.lower() not in test_tokens, f"distractor word collides with test: {w}"
                assert w.lower() not in {"он", "она", "оно", "он", "he", "she", "it", "they", "?"}, w


def main():
    check_vocab()
    r = random.Random(SEED)
    prompts = []
    for target, key in PLAN:
        lang, text, exp, cands = TESTS[key]
        d = distractor(r, ru_sentence if lang == "ru" else en_sentence, target)
        full = " ".join(d + text.split())
        prompts.append({
            "name": f"{lang} {len(d)} distractor tokens -> {exp}",
            "text": full,
            "expect": exp,
            "candidates": cands,
        })
    doc = {
        "name": "long_context",
        "description": (
            "Pronoun/referent resolution through the associative memory "
            "(pronoun -> cue word -> referent) when the story is preceded by "
            "0, ~100, ~500, ~1000 and ~2000 tokens of unrelated distractor "
            "sentences (Russian and English). The distractor never contains "
            "the pronoun, the cue words or the referents. Generated by make_long.py."
        ),
        "tokenizer": "words",
        "relations": RELATIONS,
        "prompts": prompts,
    }
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("# Generated by make_long.py (seed %d) -- edit the script, not this file.\n" % SEED)
        yaml.dump(doc, f, Dumper=NoAliasDumper, allow_unicode=True, sort_keys=False,
                  width=10**9, default_flow_style=False)
    print(f"wrote {OUT}: {len(prompts)} prompts")


if __name__ == "__main__":
    main()
