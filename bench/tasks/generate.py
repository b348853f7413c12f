"""Writes the splits of the five held-out tasks of bench/optimizers.py (40 train, 20 val, 40 test
rows each, seeded, no row in two splits) into the folder given (default: this one):

    python bench/tasks/generate.py [DIR]

The specs (DIR/<task>/spec.yaml) are written by hand. The facts were checked when the files were
made: element names against the `periodictable` package, number words against `num2words`, sums
by arithmetic; animal classes by hand; person_age's sentences are made up, so their labels are
true by construction.
"""
import json
import random
import sys
from pathlib import Path

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
SIZES = (40, 20, 40)

# ---------------------------------------------------------------- element_names (string)
ELEMENTS = """H Hydrogen|He Helium|Li Lithium|Be Beryllium|B Boron|C Carbon|N Nitrogen|O Oxygen|F Fluorine|
Ne Neon|Na Sodium|Mg Magnesium|Si Silicon|P Phosphorus|Cl Chlorine|Ar Argon|K Potassium|Ca Calcium|
Sc Scandium|Ti Titanium|V Vanadium|Cr Chromium|Mn Manganese|Fe Iron|Co Cobalt|Ni Nickel|Cu Copper|Zn Zinc|
Ga Gallium|Ge Germanium|As Arsenic|Se Selenium|Br Bromine|Kr Krypton|Rb Rubidium|Sr Strontium|Y Yttrium|
Zr Zirconium|Nb Niobium|Mo Molybdenum|Tc Technetium|Ru Ruthenium|Rh Rhodium|Pd Palladium|Ag Silver|
Cd Cadmium|In Indium|Sn Tin|Sb Antimony|Te Tellurium|I Iodine|Xe Xenon|Ba Barium|La Lanthanum|Ce Cerium|
Pr Praseodymium|Nd Neodymium|Pm Promethium|Sm Samarium|Eu Europium|Gd Gadolinium|Tb Terbium|Dy Dysprosium|
Ho Holmium|Er Erbium|Tm Thulium|Yb Ytterbium|Lu Lutetium|Hf Hafnium|Ta Tantalum|W Tungsten|Re Rhenium|
Os Osmium|Ir Iridium|Pt Platinum|Au Gold|Hg Mercury|Tl Thallium|Pb Lead|Bi Bismuth|Po Polonium|
At Astatine|Rn Radon|Fr Francium|Ra Radium|Ac Actinium|Th Thorium|Pa Protactinium|U Uranium|Np Neptunium|
Pu Plutonium|Am Americium|Cm Curium|Bk Berkelium|Cf Californium|Es Einsteinium|Fm Fermium|Md Mendelevium|
No Nobelium|Lr Lawrencium"""
# Al, S and Cs are left out: aluminium/aluminum, sulfur/sulphur, caesium/cesium are both in use.

# ---------------------------------------------------------------- animal_class (enum)
ANIMALS = {
    "mammal": ["dog", "cat", "horse", "cow", "elephant", "giraffe", "dolphin", "bat", "kangaroo", "rabbit", "squirrel", "lion", "tiger", "zebra", "camel", "platypus", "hedgehog", "gorilla"],
    "bird": ["eagle", "penguin", "ostrich", "sparrow", "parrot", "owl", "flamingo", "pigeon", "crow", "swan", "peacock", "robin", "hummingbird", "emu", "pelican", "woodpecker", "duck"],
    "fish": ["salmon", "trout", "shark", "goldfish", "tuna", "cod", "seahorse", "catfish", "carp", "pike", "swordfish", "piranha", "clownfish", "herring", "sardine", "mackerel", "halibut"],
    "reptile": ["crocodile", "alligator", "cobra", "lizard", "iguana", "gecko", "chameleon", "tortoise",
                "turtle", "komodo dragon", "rattlesnake", "viper", "anaconda", "tuatara", "skink",
                "boa constrictor"],
    "amphibian": ["frog", "toad", "salamander", "newt", "axolotl", "bullfrog", "tree frog", "caecilian",
                  "mudpuppy", "hellbender", "fire salamander", "poison dart frog", "olm", "cane toad",
                  "natterjack toad"],
    "insect": ["ant", "bee", "butterfly", "mosquito", "beetle", "grasshopper", "dragonfly", "ladybug", "moth",
               "cockroach", "housefly", "wasp", "termite", "cricket", "flea", "firefly", "cicada"],
}

# ---------------------------------------------------------------- number_words (integer)
ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def words(n: int) -> str:
    """US English, no 'and': 342 -> three hundred forty-two."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("-" + ONES[n % 10] if n % 10 else "")
    if n < 1000:
        return ONES[n // 100] + " hundred" + (" " + words(n % 100) if n % 100 else "")
    return words(n // 1000) + " thousand" + (" " + words(n % 1000) if n % 1000 else "")


# ---------------------------------------------------------------- person_age (two fields)
FIRST = ["Maria", "Tom", "Aisha", "Kenji", "Olga", "Pedro", "Fatima", "Liam", "Chloe", "Rahul", "Ingrid", "Marco", "Zanele", "Hugo", "Priya", "Sven", "Leila", "Diego", "Hana", "Omar", "Greta", "Yusuf", "Elena", "Kwame", "Sofia", "Jonas", "Mei", "Tariq", "Nadia", "Felix", "Amara", "Lukas", "Rosa", "Ivan", "Yara", "Bruno", "Camila", "Dmitri", "Ayumi", "Henrik", "Lucia", "Emeka", "Astrid", "Pablo", "Noor", "Anton", "Beatriz", "Ravi", "Klara", "Samir"]
LAST = ["Lopez", "Becker", "Khan", "Sato", "Petrova", "Alves", "Haddad", "Murphy", "Dubois", "Sharma", "Larsen", "Rossi", "Dlamini", "Fischer", "Patel", "Berg", "Nasser", "Morales", "Novak", "Farouk", "Lindqvist", "Demir", "Popescu", "Mensah", "Ricci", "Weber", "Chen", "Aziz", "Romanova", "Keller", "Okafor", "Schmidt", "Vega", "Volkov", "Costa", "Moreau", "Herrera", "Ivanov", "Tanaka", "Holm", "Marino", "Eze", "Nilsson", "Ortiz", "Rahman", "Bauer", "Santos", "Iyer", "Horvat", "Said"]
TEMPLATES = [
    "{name} turned {age} last week.",
    "After 12 years abroad, {name} came home at the age of {age}.",
    "The new teacher, {name}, is {age} years old and has 2 cats.",
    "{name}, aged {age}, finished the 42 km marathon in under four hours.",
    "Our neighbour {name} is {age} and has lived on Elm Street since 2009.",
    "In room 214, {name} ({age}) waited for the 9 o'clock bus.",
    "When we met in 1998, {name} was {age} and worked at the library.",
    "{name} is a {age}-year-old nurse who works 3 night shifts a week.",
    "On 3 May {name} celebrated turning {age} with 15 friends.",
    "The winner, {age}-year-old {name}, took home 500 dollars.",
]


def person_rows(rng: random.Random) -> list[dict]:
    firsts, lasts = FIRST[:], LAST[:]
    rng.shuffle(firsts)
    rng.shuffle(lasts)
    rows = []
    for i in range(100):
        name = f"{firsts[i % 50]} {lasts[(i * 7 + i // 50) % 50]}"
        age = rng.randint(18, 89)
        template = TEMPLATES[i % len(TEMPLATES)]
        age_text = words(age) if i % 5 in (1, 4) else str(age)  # two in five spell the age out
        rows.append({"sentence": template.format(name=name, age=age_text), "name": name, "age": age})
    return rows


def split(rows: list[dict], rng: random.Random) -> tuple[list, list, list]:
    rows = rows[:]
    rng.shuffle(rows)
    a, b, _ = SIZES
    return rows[:a], rows[a:a + b], rows[a + b:]


def stratified(groups: dict[str, list[dict]], rng: random.Random) -> tuple[list, list, list]:
    train, val, test = [], [], []
    for rows in groups.values():
        rows = rows[:]
        rng.shuffle(rows)
        n = len(rows)
        a, b = round(n * 0.4), round(n * 0.2)
        train += rows[:a]
        val += rows[a:a + b]
        test += rows[a + b:]
    # fix sizes to exactly 40/20/40 by moving rows between splits
    for part in (train, val, test):
        rng.shuffle(part)
    pool = train + val + test
    assert len(pool) == 100
    counts = [len(train), len(val), len(test)]
    if counts != list(SIZES):
        # rebalance: move surplus rows from the larger splits to the smaller ones
        parts = [train, val, test]
        for i, want in enumerate(SIZES):
            while len(parts[i]) > want:
                j = next(k for k, w in enumerate(SIZES) if len(parts[k]) < w)
                parts[j].append(parts[i].pop())
    for part in (train, val, test):
        rng.shuffle(part)
    return train, val, test


def main() -> None:
    rng = random.Random(15)
    tasks = {}
    elements = [item.strip().split(" ", 1) for item in ELEMENTS.replace("\n", "").split("|")]
    assert len(elements) == 100, len(elements)
    tasks["element_names"] = split([{"symbol": s, "element": n} for s, n in elements], rng)

    numbers: set[int] = set()
    while len(numbers) < 100:  # a spread of sizes: 21-99, 100-999, 1,000-99,999, 100,000-999,999
        bucket = len(numbers) % 4
        lo, hi = [(21, 99), (101, 999), (1001, 99999), (100001, 999999)][bucket]
        numbers.add(rng.randint(lo, hi))
    tasks["number_words"] = split([{"words": words(n), "value": n} for n in sorted(numbers)], rng)

    groups = {label: [{"animal": a, "animal_class": label} for a in names] for label, names in ANIMALS.items()}
    assert sum(map(len, groups.values())) == 100
    tasks["animal_class"] = stratified(groups, rng)

    sums = []
    seen = set()
    while len(sums) < 100:
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        correct = len(sums) % 2 == 0
        c = a + b if correct else a + b + rng.choice([-10, -2, -1, 1, 2, 10])
        equation = f"{a} + {b} = {c}"
        if equation in seen:
            continue
        seen.add(equation)
        sums.append({"equation": equation, "correct": correct})
    tasks["sum_check"] = split(sums, rng)

    tasks["person_age"] = split(person_rows(rng), rng)

    for task, parts in tasks.items():
        keys = set()
        for part, rows in zip(("train", "val", "test"), parts, strict=True):
            assert len(rows) == dict(zip(("train", "val", "test"), SIZES, strict=True))[part], (task, part, len(rows))
            path = OUT / task / f"{part}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(row) + "\n" for row in rows))
            for row in rows:
                key = json.dumps({k: v for k, v in row.items() if k in
                                  ("symbol", "words", "animal", "equation", "sentence")})
                assert key not in keys, (task, key)
                keys.add(key)


if __name__ == "__main__":
    main()
