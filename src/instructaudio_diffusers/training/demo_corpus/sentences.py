"""Grammar-generated everyday sentences in English and Mandarin, and bilingual two-speaker exchanges.

Why a grammar: the corpus must ship no third-party text (licence-free, reproducible offline), yet needs
thousands of distinct, natural sentences that exercise what the processor normalizes (clock times, prices,
counts, dates, percentages) and, in Chinese, the polyphones the G2P must get right in context (银行 hang2 /
行走 xing2, 音乐 yue4 / 快乐 le4, 长城 chang2 / 长高 zhang3, 重庆 chong2 / 重要 zhong4). A few dozen templates
over a vocabulary of common words, names, numbers and times give far more combinations than needed; the
generator draws them with a seeded generator until it has the requested number of distinct sentences.

Dialogue exchanges are written once as parallel English/Chinese turns over bilingual slot values, so a
mixed-language dialogue (one speaker in Chinese, the other in English) still makes sense turn by turn.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np

__all__ = [
    "chinese_sentences",
    "english_sentences",
    "exchanges",
    "split_held_out",
]

Slot = Sequence[str] | Callable[[np.random.Generator], str]
_SLOT = re.compile(r"{([a-z_]+?)(\d?)}")


def _pick(values: Sequence, rng: np.random.Generator):
    return values[int(rng.integers(len(values)))]


def _fill(template: str, slots: Mapping[str, Slot], rng: np.random.Generator) -> str:
    """Fill every `{slot}` of `template`; `{name2}` draws from `name` but differs from `{name}`."""
    values: dict[str, str] = {}
    for base, suffix in _SLOT.findall(template):
        key = base + suffix
        if key in values:
            continue
        source = slots[base]
        for _ in range(16):
            value = source(rng) if callable(source) else _pick(source, rng)
            if value not in values.values():
                break
        values[key] = value
    return template.format(**values)


def _generate(
    templates: Sequence[str],
    slots: Mapping[str, Slot],
    count: int,
    seed: int,
    finish: Callable[[str], str] = lambda text: text,
) -> list[str]:
    """`count` distinct sentences drawn from the grammar, in a seed-determined order."""
    rng = np.random.default_rng(seed)
    found: dict[str, None] = {}
    attempts = 0
    while len(found) < count:
        attempts += 1
        if attempts > 100 * count + 1000:
            raise RuntimeError(
                f"The grammar yields fewer than {count} distinct sentences ({len(found)} found)."
            )
        found[finish(_fill(_pick(templates, rng), slots, rng))] = None
    return list(found)


def split_held_out(items: Sequence, held_out: int, seed: int) -> tuple[list, list]:
    """Split `items` into (training, held-out) with `held_out` items chosen by `seed`; disjoint by position.

    Items are distinct, so disjoint positions give disjoint sets.
    """
    if not 0 <= held_out <= len(items):
        raise ValueError(f"Cannot hold out {held_out} of {len(items)} items.")
    order = np.random.default_rng(seed).permutation(len(items))
    held = set(order[:held_out].tolist())
    return [item for i, item in enumerate(items) if i not in held], [items[i] for i in sorted(held)]


# ---------------------------------------------------------------------------------------------- English
def _en_clock(rng: np.random.Generator) -> str:
    hour, minute = int(rng.integers(1, 13)), int(_pick((0, 0, 15, 30, 45, 10, 20, 40, 50, 5), rng))
    suffix = _pick(("", " am", " pm", ""), rng)
    return f"{hour}:{minute:02d}{suffix}" if minute or not suffix else f"{hour}{suffix}"


def _en_price(rng: np.random.Generator) -> str:
    dollars = int(rng.integers(1, 200))
    return f"${dollars}.{int(rng.integers(1, 20)) * 5:02d}" if rng.random() < 0.3 else f"${dollars}"


def _en_count(rng: np.random.Generator) -> str:
    return str(int(rng.integers(2, 40)))


def _en_date(rng: np.random.Generator) -> str:
    day = int(rng.integers(1, 29))
    suffix = "th" if 10 < day < 14 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{_pick(_EN_MONTHS, rng)} {day}{suffix}"


_EN_MONTHS = ("January February March April May June July August September October November December").split()
_EN_SLOTS: dict[str, Slot] = {
    "name": ("James", "Mary", "John", "Linda", "Michael", "Sarah", "David", "Emma", "Peter", "Anna", "Tom",
             "Lucy", "Daniel", "Grace", "Robert", "Helen", "Kevin", "Laura", "Paul", "Rachel", "Mark", "Alice",
             "Steven", "Julia", "Brian", "Kate", "Frank", "Nancy", "George", "Karen", "Henry", "Amy", "Jack",
             "Emily", "Sam", "Rose", "Oliver", "Sophie", "Adam", "Claire"),
    "place": ("the library", "the station", "the park", "the market", "the office", "the bank", "the school",
              "the hospital", "the beach", "the museum", "the airport", "the bakery", "the gym",
              "the post office", "the coffee shop", "the garden", "the hotel", "the cinema", "the stadium",
              "the pharmacy", "the bookstore", "the zoo", "the farm", "the bus stop", "the restaurant"),
    "city": ("London", "Paris", "Boston", "Chicago", "Toronto", "Sydney", "Dublin", "Seattle", "Denver",
             "Madrid", "Berlin", "Tokyo", "Beijing", "Shanghai", "Rome", "Vienna", "Austin", "Oxford"),
    "time": ("this morning", "this afternoon", "tonight", "tomorrow", "tomorrow morning", "next week",
             "on Monday", "on Tuesday", "on Wednesday", "on Thursday", "on Friday", "on Saturday", "on Sunday",
             "after lunch", "before dinner", "at noon", "later today", "next month", "this weekend"),
    "past": ("yesterday", "last night", "last week", "this morning", "two days ago", "on Sunday",
             "last month", "an hour ago", "last summer", "on Friday evening"),
    "weather": ("sunny", "rainy", "cloudy", "windy", "cold", "warm", "hot", "foggy", "snowy", "mild"),
    "relative": ("brother", "sister", "mother", "father", "uncle", "aunt", "cousin", "grandmother",
                 "grandfather", "neighbor", "friend", "teacher"),
    "adj": ("old", "new", "small", "large", "heavy", "light", "cheap", "beautiful", "strange", "useful",
            "broken", "shiny", "wooden", "simple", "famous", "quiet", "busy", "clean", "empty", "bright"),
    "color": ("red", "blue", "green", "yellow", "white", "black", "gray", "brown", "orange", "purple"),
    "object": ("lamp", "chair", "table", "bag", "umbrella", "clock", "camera", "bicycle", "jacket", "watch",
               "phone", "box", "key", "map", "picture", "radio", "bottle", "basket", "blanket", "window"),
    "items": ("apples", "oranges", "tickets", "chairs", "books", "eggs", "cups", "pencils", "plates",
              "bananas", "candles", "letters", "bottles of water", "loaves of bread", "pairs of socks"),
    "vehicle": ("car", "truck", "bicycle", "van", "motorcycle", "bus", "scooter"),
    "animal": ("cat", "dog", "puppy", "kitten", "rabbit", "bird", "horse", "duck"),
    "furniture": ("table", "bed", "sofa", "desk", "bench", "stairs", "tree"),
    "food": ("cake", "bread", "soup", "rice", "pizza", "salad", "pie", "chicken", "fish", "cheese", "pasta"),
    "drink": ("tea", "coffee", "milk", "orange juice", "hot chocolate", "water", "lemonade"),
    "taste": ("delicious", "too salty", "a little sweet", "wonderful", "strange", "very fresh", "too spicy"),
    "activity": ("go for a walk", "play tennis", "watch a movie", "cook dinner", "read a book",
                 "visit the museum", "go swimming", "clean the kitchen", "ride our bikes", "plant some flowers",
                 "study for the test", "paint the fence", "write a letter", "go shopping", "bake some bread"),
    "doing": ("reading the news", "cooking dinner", "fixing the sink", "writing a report", "washing the car",
              "practicing the piano", "walking the dog", "watering the plants", "talking on the phone"),
    "job": ("a doctor", "a teacher", "a nurse", "an engineer", "a farmer", "a pilot", "a cook", "a writer",
            "a driver", "a painter", "a lawyer", "a baker"),
    "feeling": ("happy", "tired", "hungry", "excited", "nervous", "surprised", "worried", "proud", "calm"),
    "clock": _en_clock,
    "price": _en_price,
    "count": _en_count,
    "date": _en_date,
    "percent": lambda rng: f"{int(rng.integers(5, 100))}%",
    "year": lambda rng: str(int(rng.integers(1950, 2031))),
    "minutes": lambda rng: str(int(_pick((5, 10, 15, 20, 25, 30, 40, 45), rng))),
}  # fmt: skip

_EN_TEMPLATES: tuple[str, ...] = (
    "{name} will meet us at {place} {time}.",
    "Please remember to buy {count} {items} on the way home.",
    "The train to {city} leaves at {clock}, so we should hurry.",
    "I think the {adj} {object} on the table belongs to {name}.",
    "It was {weather} {past}, but today it is {weather2}.",
    "My {relative} works at {place} near the river.",
    "Could you tell me how to get to {place}?",
    "How much does the {adj} {object} cost?",
    "The meeting starts at {clock} {time}.",
    "{name} has lived in {city} since {year}.",
    "We need {count} more {items} for the party {time}.",
    "Turn left at {place} and walk for about {minutes} minutes.",
    "The {color} {object} was only {price} at the market.",
    "Do you want to {activity} with me {time}?",
    "{name} and {name2} are going to {place} {time}.",
    "The {animal} is sleeping under the {furniture} again.",
    "Her birthday is on {date}, and she wants a {color} {object}.",
    "There were {count} people waiting at {place} {past}.",
    "Don't forget to call your {relative} {time}.",
    "The {color} {vehicle} parked outside belongs to my {relative}.",
    "I would like a cup of {drink} and a slice of {food}, please.",
    "{name} said the {food} tasted {taste}.",
    "Why is {place} so crowded {time}?",
    "Let's {activity} {time} if the weather is {weather}.",
    "The bus was {minutes} minutes late {past}.",
    "My phone battery is at {percent}, so I need to charge it.",
    "The {object} costs {price}, which is too expensive for me.",
    "{name} was {doing} when I arrived {past}.",
    "My {relative} wants to become {job} one day.",
    "We felt {feeling} after the long trip to {city}.",
    "Is it true that {name} moved to {city} {past}?",
    "The shop opens at {clock} and closes at {clock2}.",
    "I found a {adj} {object} in the {color} box.",
    "Sales went up by {percent} in {year}.",
    "{name}'s {relative} is {job} at {place}.",
    "We have {count} {items} left, and the shop is already closed.",
    "The flight from {city} lands at {clock} {time}.",
    "Can you please bring me the {adj} {object} from the kitchen?",
    "I have been {doing} for {minutes} minutes.",
    "On {date} we will {activity} with {name}.",
    "The {animal} ran across the road in front of the {color} {vehicle}.",
    "Nobody knows why {name} left {place} so early {past}.",
    "The tickets cost {price} each, and we need {count} of them.",
    "After dinner, {name} likes to {activity}.",
    "The weather in {city} is {weather} and a little {weather2} today.",
    "My {relative} was born in {year} in a small town near {city}.",
)


def english_sentences(count: int, seed: int) -> list[str]:
    """`count` distinct English sentences (digits, times and prices left for the normalizer to read)."""
    return _generate(_EN_TEMPLATES, _EN_SLOTS, count, seed, finish=lambda text: text[0].upper() + text[1:])


# ---------------------------------------------------------------------------------------------- Chinese
def _zh_clock(rng: np.random.Generator) -> str:
    hour, minute = int(rng.integers(1, 13)), int(_pick((0, 0, 15, 30, 45, 10, 20, 40, 50), rng))
    return f"{hour}:{minute:02d}" if minute else f"{hour}点"


def _zh_date(rng: np.random.Generator) -> str:
    return f"{int(rng.integers(1, 13))}月{int(rng.integers(1, 29))}日"


_ZH_SLOTS: dict[str, Slot] = {
    "name": ("小明", "小红", "张伟", "李娜", "王芳", "刘洋", "陈静", "老王", "李老师", "张医生", "王阿姨", "小李",
             "赵强", "孙丽", "周杰", "吴敏", "郑华", "小张", "刘老师", "林小雨", "黄磊", "何平", "马丽", "高飞"),
    "place": ("银行", "学校", "医院", "图书馆", "超市", "公园", "火车站", "机场", "饭店", "咖啡馆", "电影院",
              "博物馆", "体育馆", "邮局", "书店", "菜市场", "动物园", "商场", "办公室", "游泳馆"),
    "city": ("北京", "上海", "重庆", "广州", "成都", "西安", "杭州", "南京", "武汉", "长沙", "天津", "深圳",
             "苏州", "青岛", "昆明", "厦门"),
    "time": ("今天上午", "今天下午", "今天晚上", "明天", "明天早上", "后天", "下个星期", "这个周末", "星期一",
             "星期三", "星期五", "星期六", "中午", "下班以后", "吃完饭以后", "下个月"),
    "past": ("昨天", "昨天晚上", "上个星期", "前天", "上个月", "去年", "刚才", "今天早上"),
    "weather": ("晴天", "阴天", "下雨", "下雪", "刮大风", "很热", "很冷", "很暖和"),
    "relative": ("哥哥", "姐姐", "弟弟", "妹妹", "妈妈", "爸爸", "爷爷", "奶奶", "叔叔", "阿姨", "邻居", "朋友"),
    "fruit": ("苹果", "香蕉", "橘子", "西瓜", "梨", "葡萄", "桃子", "草莓"),
    "measure_item": ("本书", "张票", "把椅子", "个杯子", "支笔", "件衣服", "瓶水", "个面包", "双鞋", "盒牛奶"),
    "object": ("手机", "雨伞", "书包", "钥匙", "电脑", "相机", "自行车", "手表", "眼镜", "帽子", "词典", "地图"),
    "food": ("饺子", "面条", "米饭", "包子", "火锅", "蛋糕", "小笼包", "炒饭", "鱼", "豆腐"),
    "drink": ("茶", "咖啡", "牛奶", "果汁", "热水", "豆浆"),
    "activity": ("散步", "打篮球", "看电影", "做饭", "看书", "游泳", "爬山", "打扫房间", "骑自行车", "逛街",
                 "唱歌", "跑步", "下棋", "画画", "学习中文", "听音乐"),
    "job": ("医生", "老师", "护士", "工程师", "司机", "厨师", "警察", "律师", "记者", "会计"),
    "feeling": ("很高兴", "有点累", "非常激动", "很紧张", "特别快乐", "有点担心", "很满意", "很饿"),
    "adj": ("很贵", "很便宜", "很漂亮", "太旧了", "很重", "很方便", "非常好用", "有点小"),
    "clock": _zh_clock,
    "date": _zh_date,
    "count": lambda rng: str(int(rng.integers(2, 60))),
    "price": lambda rng: str(int(rng.integers(2, 500))),
    "decimal": lambda rng: f"{int(rng.integers(1, 100))}.{int(rng.integers(1, 10))}",
    "year": lambda rng: str(int(rng.integers(1960, 2031))),
    "percent": lambda rng: f"{int(rng.integers(5, 100))}%",
    "degrees": lambda rng: str(int(rng.integers(-10, 40))),
    "floor": lambda rng: str(int(rng.integers(2, 30))),
    "minutes": lambda rng: str(int(_pick((5, 10, 15, 20, 30, 40), rng))),
}  # fmt: skip

_ZH_TEMPLATES: tuple[str, ...] = (
    "{name}{time}要去{place}办事。",
    "我们{time}在{place}门口见面吧。",
    "今天{weather}，我们一起去{place}附近{activity}吧。",
    "{name}买了{count}个{fruit}，一共花了{price}元。",
    "请问去{place}怎么走？",
    "火车{clock}从{city}出发，晚上就到了。",
    "{name}很喜欢听音乐，每天都过得很快乐。",
    "孩子们一年比一年长高了，{relative}特别高兴。",
    "{name}在{city}的一家银行工作了{count}年。",
    "{date}是{name}的生日，我们准备了{food}。",
    "我觉得这个{object}{adj}。",
    "周末我们去长城步行，顺便看看风景。",
    "{name}，你今天晚上睡觉之前记得给{relative}打电话。",
    "现在是{clock}，会议马上就要开始了。",
    "这件事非常重要，请你一定要告诉{name}。",
    "{relative}从重庆来，现在住在{city}。",
    "外面只有{degrees}度，出门多穿点衣服。",
    "{name}的办公室在{floor}楼。",
    "我们班一共有{count}个学生，今天来了一半。",
    "他每天早上{clock}起床，然后去{place}跑步。",
    "{name}说这里的{food}又便宜又好吃。",
    "我{past}在{place}看见{name}了。",
    "这{measure_item}{adj}，你想要吗？",
    "{relative}想当{job}，所以每天都很努力。",
    "听说{name}{past}搬到{city}去了，是真的吗？",
    "商店{clock}开门，晚上{clock2}关门。",
    "{year}年的时候，{name}还在{city}上学。",
    "今年的价格比去年高了{percent}。",
    "我想喝一杯{drink}，再来一份{food}。",
    "{name}在公园里慢慢地行走，心情{feeling}。",
    "银行{time}不开门，我们{time2}再去吧。",
    "长城很长，我们走了{minutes}分钟才到山顶。",
    "重庆的夏天很热，常常有{degrees}度。",
    "{name}，你的{object}忘在{place}了。",
    "这本书一共{price}页，我已经看了一半。",
    "{name}跑步用了{decimal}秒，比{name2}快一点。",
    "{time}我们去{place}{activity}，好不好？",
    "我的{relative}是一名{job}，在{city}工作。",
    "{name}{past}买了一{measure_item}，花了{price}元。",
    "音乐会{date}晚上{clock}开始，别迟到了。",
    "坐地铁到{place}大概要{minutes}分钟。",
    "{name}觉得学习中文很有意思，也很重要。",
    "我们还有{count}{measure_item}，应该够用了。",
    "{relative}{past}去{city}旅行，玩得{feeling}。",
)


def chinese_sentences(count: int, seed: int) -> list[str]:
    """`count` distinct Mandarin sentences in Han characters, digits left for `normalize_chinese`."""
    return _generate(_ZH_TEMPLATES, _ZH_SLOTS, count, seed)


# ---------------------------------------------------------------------------------------------- dialogues
# Bilingual slot values: index 0 English, index 1 Chinese; a draw picks one pair for both languages.
_BI_SLOTS: dict[str, tuple[tuple[str, str], ...]] = {
    "place": (("the library", "图书馆"), ("the bank", "银行"), ("the park", "公园"), ("the station", "火车站"),
              ("the museum", "博物馆"), ("the supermarket", "超市"), ("the hospital", "医院"),
              ("the cinema", "电影院"), ("the bookstore", "书店"), ("the gym", "体育馆"),
              ("the coffee shop", "咖啡馆"), ("the airport", "机场")),
    "time": (("this afternoon", "今天下午"), ("tonight", "今天晚上"), ("tomorrow", "明天"),
             ("this weekend", "这个周末"), ("on Friday", "星期五"), ("tomorrow morning", "明天早上"),
             ("next week", "下个星期"), ("after lunch", "吃完午饭以后")),
    "clock": tuple((f"{h}:{m:02d}" if m else f"{h} o'clock", f"{h}:{m:02d}" if m else f"{h}点")
                   for h in range(1, 13) for m in (0, 30)),
    "food": (("dumplings", "饺子"), ("noodles", "面条"), ("hot pot", "火锅"), ("pizza", "比萨饼"),
             ("fried rice", "炒饭"), ("cake", "蛋糕"), ("soup", "汤")),
    "activity": (("watch a movie", "看电影"), ("go for a walk", "去散步"), ("play basketball", "打篮球"),
                 ("go swimming", "去游泳"), ("listen to some music", "听音乐"), ("go shopping", "去逛街"),
                 ("climb the hill", "去爬山"), ("study together", "一起学习")),
    "count": tuple((str(n), str(n)) for n in range(2, 13)),
    "weather": (("sunny", "出太阳"), ("rainy", "下雨"), ("very cold", "很冷"), ("really hot", "很热"),
                ("windy", "刮大风"), ("cloudy", "阴天")),
    "errand": (("borrow some books", "借几本书"), ("buy a gift", "买一份礼物"), ("meet a friend", "见一个朋友"),
               ("pick up a package", "取一个包裹"), ("see a doctor", "看医生"), ("get some cash", "取点钱")),
}  # fmt: skip

# Each exchange: turns alternate S0, S1, S0, S1; a dialogue keeps the first 2-4 turns.
_EXCHANGES: tuple[tuple[tuple[str, str], ...], ...] = (
    (("Where are you going {time}?", "你{time}去哪儿？"),
     ("I'm going to {place} to {errand}.", "我要去{place}{errand}。"),
     ("Can I come with you?", "我可以跟你一起去吗？"),
     ("Sure, let's meet at {clock}.", "当然可以，我们{clock}见。")),
    (("What's the weather like {time}?", "{time}天气怎么样？"),
     ("I heard it will be {weather}.", "听说会{weather}。"),
     ("Then let's {activity} another day.", "那我们改天再{activity}吧。"),
     ("Good idea, I agree.", "好主意，我同意。")),
    (("Do you want to {activity} {time}?", "{time}你想{activity}吗？"),
     ("Yes, that sounds great!", "好啊，听起来很不错！"),
     ("Great, I'll wait for you at {place}.", "太好了，我在{place}等你。"),
     ("Okay, see you at {clock}.", "好的，{clock}见。")),
    (("What would you like to eat?", "你想吃什么？"),
     ("I'd like some {food}, please.", "我想吃{food}。"),
     ("How many people are coming?", "一共有几个人来？"),
     ("I think {count} people.", "我想有{count}个人。")),
    (("Excuse me, how do I get to {place}?", "请问，去{place}怎么走？"),
     ("Go straight and turn left at the corner.", "一直往前走，在路口往左拐。"),
     ("Is it far from here?", "离这儿远吗？"),
     ("No, it's only a short walk.", "不远，走几分钟就到了。")),
    (("Hello, are you free {time}?", "你好，你{time}有空吗？"),
     ("Sorry, I have to {errand}.", "不好意思，我得{errand}。"),
     ("No problem, maybe next time.", "没关系，下次吧。"),
     ("Thank you for understanding!", "谢谢你的理解！")),
    (("What time does {place} open?", "{place}几点开门？"),
     ("It opens at {clock}.", "{clock}开门。"),
     ("Thanks, I'll go {time}.", "谢谢，我{time}去。"),
     ("You're welcome, have a nice day.", "不客气，祝你今天愉快。")),
    (("Have you been to {place} {time}?", "你{time}去过{place}吗？"),
     ("Not yet, is it good?", "还没有，那里好吗？"),
     ("Yes, you should {activity} there.", "很好，你应该去那儿{activity}。"),
     ("I will, thanks for the tip.", "好的，谢谢你告诉我。")),
    (("How was your trip?", "你的旅行怎么样？"),
     ("It was wonderful, but it was {weather} every day.", "非常好，不过每天都{weather}。"),
     ("Did you try the local {food}?", "你尝了当地的{food}吗？"),
     ("Of course, it was delicious!", "当然，特别好吃！")),
    (("Could you help me {errand} {time}?", "你{time}能帮我{errand}吗？"),
     ("Of course, what time?", "当然可以，几点？"),
     ("How about {clock}?", "{clock}怎么样？"),
     ("That works for me.", "没问题。")),
)  # fmt: skip


def exchanges(count: int, seed: int) -> list[tuple[tuple[str, str], ...]]:
    """`count` distinct filled exchanges; each is a tuple of 4 `(english, chinese)` turns, S0 first."""
    rng = np.random.default_rng(seed)
    found: dict[tuple[tuple[str, str], ...], None] = {}
    attempts = 0
    while len(found) < count:
        attempts += 1
        if attempts > 100 * count + 1000:
            raise RuntimeError(f"The dialogue grammar yields fewer than {count} distinct exchanges.")
        exchange = _pick(_EXCHANGES, rng)
        needed = dict.fromkeys(base for en, _ in exchange for base, _ in _SLOT.findall(en))
        chosen = {name: _pick(_BI_SLOTS[name], rng) for name in needed}
        found[
            tuple(
                (
                    en.format(**{k: v[0] for k, v in chosen.items()}),
                    zh.format(**{k: v[1] for k, v in chosen.items()}),
                )
                for en, zh in exchange
            )
        ] = None
    return list(found)
