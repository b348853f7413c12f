"""Writes datasets/orders/{train,test}.csv: short order messages and the order each one states
(recipes/orders.yaml extracts it). Seeded; the labels are true by construction (each message is
written from its order). A message names the city to ship to in about two rows of three; the
others have none, so `order.city` is null there.

    python datasets/orders/generate.py [DIR]
"""
import csv
import json
import random
import sys
from pathlib import Path

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
SIZES = {"train": 40, "test": 60}

FIRST = ["Maria", "John", "Aisha", "Kenji", "Olga", "Pedro", "Fatima", "Liam", "Chen", "Sofia", "Omar",
         "Emma", "Raj", "Ingrid", "Tomas", "Yuki", "Grace", "Ahmed", "Nora", "Lucas", "Elena", "David"]
LAST = ["Lopez", "Smith", "Khan", "Tanaka", "Ivanova", "Silva", "Haddad", "Murphy", "Wang", "Rossi",
        "Farouk", "Dubois", "Patel", "Berg", "Novak", "Sato", "Okafor", "Hassan", "Lind", "Costa"]
ITEMS = ["blue mugs", "notebooks", "desk lamps", "wool hats", "coffee grinders", "phone cases",
         "garden chairs", "water bottles", "yoga mats", "tea kettles", "backpacks", "candles",
         "picture frames", "umbrellas", "ceramic plates", "hand towels"]
CITIES = ["Berlin", "Lisbon", "Osaka", "Toronto", "Nairobi", "Lyon", "Austin", "Krakow", "Dublin",
          "Seoul", "Porto", "Oslo", "Denver", "Milan", "Quito"]
NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 10: "ten", 12: "twelve"}

WITH_CITY = [
    "Hi, this is {name}. Please send {qty} {item} to {city}.",
    "{name} here: I'd like to order {qty} {item}, delivered to {city}.",
    "Order for {name}: {qty} {item}. Ship to {city}{gift_clause}.",
    "Could you ship {qty} {item} to {city}? Thanks, {name}",
    "Please deliver {qty} {item} to our office in {city}. Regards, {name}.",
]
WITHOUT_CITY = [
    "Hi, this is {name}. I want to buy {qty} {item}.",
    "{name} would like {qty} {item}{gift_clause}, please.",
    "Please put me down for {qty} {item}. {name}",
    "Order: {qty} {item}. Name: {name}.",
]


def row(rng: random.Random) -> dict:
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    quantity = rng.choice([1, 2, 2, 3, 3, 4, 5, 6, 10, 12, 20, 25])
    item = rng.choice(ITEMS)
    city = rng.choice(CITIES) if rng.random() < 0.65 else None
    gift = rng.random() < 0.3
    qty = NUMBER_WORDS[quantity] if quantity in NUMBER_WORDS and rng.random() < 0.3 else str(quantity)
    if quantity == 1:
        qty, item_text = "one", item.rstrip("s")
    else:
        item_text = item
    template = rng.choice(WITH_CITY if city else WITHOUT_CITY)
    gift_clause = ", gift wrapped" if gift else ""
    text = template.format(name=name, qty=qty, item=item_text, city=city, gift_clause=gift_clause)
    if gift and "{gift_clause}" not in template:
        text += " It is a gift, please wrap it."
    order = {"customer": name, "item": item_text, "quantity": quantity, "city": city, "gift_wrap": gift}
    return {"message": text, "order": order}


def main() -> None:
    rng = random.Random(2026)
    seen: set[str] = set()
    for split, size in SIZES.items():
        rows = []
        while len(rows) < size:
            r = row(rng)
            if r["message"] not in seen:
                seen.add(r["message"])
                rows.append(r)
        with open(OUT / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "message", "order"])
            for i, r in enumerate(rows, 1):
                writer.writerow([f"{split}-{i}", r["message"], json.dumps(r["order"])])


if __name__ == "__main__":
    main()
