"""Reference data for the demo dealership: names, companies, the Chinese market's cars, VINs."""

from __future__ import annotations

from dataclasses import dataclass

SURNAMES = (  # the commonest first: they are drawn with a bias to the front
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余于杜叶程魏苏吕丁任卢"
)
COMPOUND_SURNAMES = ("欧阳", "司马", "上官")
MALE_GIVEN = "伟强磊军勇杰涛明超刚建国辉鑫宇浩博轩东海峰波斌文华平俊凯"
FEMALE_GIVEN = "芳娜敏静丽艳秀霞桂英玉红欣怡涵雨佳晓婷慧琳颖倩思嘉梓"
EN_MALE = ("James", "David", "Michael", "Daniel", "Thomas", "Peter", "Mark", "Paul", "Oliver")
EN_FEMALE = ("Emma", "Sarah", "Laura", "Anna", "Emily", "Sophie", "Kate", "Lucy", "Julia")
EN_SURNAMES = ("Smith", "Brown", "Wilson", "Taylor", "Martin", "Walker", "Clarke", "Rossi", "Weber")
CITIES = ("上海", "苏州", "杭州", "南京", "无锡", "宁波", "嘉兴", "常州")
FIRM_WORDS = ("恒通", "瑞丰", "鼎盛", "新达", "宏图", "启航", "嘉禾", "远景", "博越", "汇川")
FIRM_KINDS = ("物流有限公司", "科技有限公司", "贸易有限公司", "建设工程有限公司", "医药有限公司")
DISTRICTS = ("浦东新区", "徐汇区", "闵行区", "静安区", "嘉定区", "松江区")
AGENCIES = ("城市管理局", "市场监督管理局", "教育局", "卫生健康委员会", "交通委员会", "街道办事处")
# Reserved for examples (RFC 2606): a demo must never e-mail a real mailbox.
EMAIL_DOMAINS = ("example.com", "example.net", "example.org")
MOBILE_PREFIXES = [
    "130",
    "131",
    "132",
    "133",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "155",
    "156",
    "157",
    "158",
    "159",
    "166",
    "176",
    "177",
    "180",
    "181",
    "182",
    "183",
    "185",
    "186",
    "187",
    "188",
    "189",
    "198",
    "199",
]
COMPLAINTS = {
    "zh": (
        "保养等待时间过长",
        "维修后异响仍未解决",
        "服务顾问未按约定回电",
        "配件到货延迟",
        "收费明细不清楚",
    ),
    "en": (
        "Waited too long for the service",
        "Noise still there after the repair",
        "Service advisor did not call back",
        "Spare part arrived late",
        "Invoice not explained",
    ),
}


@dataclass(frozen=True)
class Model:
    """A car sold in China, with its manufacturer's VIN prefix and warranty."""

    make: str
    model: str
    prefix: str  # WMI (maker) + VDS (model), VIN positions 1-8
    warranty_months: int
    warranty_km: int


MODELS = {
    "qin": Model("BYD", "Qin PLUS", "LGXCE4CB", 72, 150000),
    "song": Model("BYD", "Song PLUS", "LGXCH6CD", 72, 150000),
    "han": Model("BYD", "Han", "LGXC76DG", 72, 150000),
    "dolphin": Model("BYD", "Dolphin", "LGXCD4C1", 72, 150000),
    "emgrand": Model("Geely", "Emgrand", "L6T7844S", 36, 100000),
    "xingyue": Model("Geely", "Xingyue L", "L6T7944Z", 36, 100000),
    "cs75": Model("Changan", "CS75 PLUS", "LS5A3DKE", 36, 100000),
    "h6": Model("Haval", "H6", "LGWEF6A5", 36, 100000),
    "tiggo": Model("Chery", "Tiggo 8", "LVVDB21B", 36, 100000),
    "lavida": Model("Volkswagen", "Lavida", "LSVAL6BR", 36, 100000),
    "santana": Model("Volkswagen", "Santana", "LSVNV618", 36, 100000),
    "passat": Model("Volkswagen", "Passat", "LSVCH6A4", 36, 100000),
    "sagitar": Model("Volkswagen", "Sagitar", "LFV2A21K", 36, 100000),
    "corolla": Model("Toyota", "Corolla", "LFMAP22C", 36, 100000),
    "camry": Model("Toyota", "Camry", "LVGBE40K", 36, 100000),
    "civic": Model("Honda", "Civic", "LVHFC167", 36, 100000),
    "accord": Model("Honda", "Accord", "LHGCV168", 36, 100000),
    "sylphy": Model("Nissan", "Sylphy", "LGBH52E0", 36, 100000),
    "gl8": Model("Buick", "GL8", "LSGUD84X", 36, 100000),
    "model3": Model("Tesla", "Model 3", "LRW3E7EA", 48, 80000),
    "modely": Model("Tesla", "Model Y", "LRWYG7EK", 48, 80000),
    "miniev": Model("Wuling", "Hongguang MINI EV", "LZWACAGA", 24, 60000),
    "hongqi": Model("Hongqi", "H5", "LFPH3ACC", 36, 100000),
    "a6l": Model("Audi", "A6L", "LFV3A24G", 36, 100000),
    "bmw5": Model("BMW", "5 Series Li", "LBV5S310", 36, 100000),
    "benz-e": Model("Mercedes-Benz", "E-Class L", "LE4ZG8JB", 36, 100000),
}

# Per segment, model keys repeated by how often the segment buys them.
SEGMENT_MODELS = {
    "private": [
        "qin",
        "qin",
        "qin",
        "song",
        "song",
        "han",
        "dolphin",
        "dolphin",
        "emgrand",
        "emgrand",
        "xingyue",
        "cs75",
        "h6",
        "h6",
        "tiggo",
        "lavida",
        "lavida",
        "sagitar",
        "corolla",
        "corolla",
        "camry",
        "civic",
        "accord",
        "sylphy",
        "sylphy",
        "model3",
        "modely",
        "modely",
        "miniev",
        "miniev",
        "bmw5",
        "benz-e",
    ],
    "corporate": [
        "gl8",
        "gl8",
        "gl8",
        "passat",
        "passat",
        "camry",
        "accord",
        "benz-e",
        "bmw5",
        "a6l",
        "modely",
        "han",
    ],
    "government": ["hongqi", "hongqi", "hongqi", "a6l", "a6l", "passat", "sagitar", "gl8", "han"],
    "taxi": ["santana", "santana", "lavida", "sylphy", "corolla", "qin", "qin", "emgrand"],
}
KM_PER_DAY = {"private": 40, "corporate": 60, "government": 50, "taxi": 300}

# VIN check digit (ISO 3779 / GB 16735): letter values and position weights.
_VALUES = dict(
    zip(
        "ABCDEFGHJKLMNPRSTUVWXYZ",
        (1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 7, 9, 2, 3, 4, 5, 6, 7, 8, 9),
        strict=True,
    )
)
_VALUES.update({str(d): d for d in range(10)})
_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
YEAR_CODES = "ABCDEFGHJKLMNPRSTVWXY123456789"  # model years 2010, 2011, … (30-year cycle)
PLANTS = "ABCDEFGHJKLMNPRSTUVWXYZ123456789"


def vin_check_digit(vin: str) -> str:
    """The check character (position 9) for a 17-character VIN."""
    total = sum(_VALUES[c] * w for c, w in zip(vin, _WEIGHTS, strict=True))
    return "X" if total % 11 == 10 else str(total % 11)


class VinMaker:
    """Unique, valid VINs: vehicle number n -> plant and 6-digit serial, checksummed fast."""

    def __init__(self) -> None:
        # The serial's contribution to the check sum, precomputed per half (3 digits each).
        self._high = [
            sum(int(d) * w for d, w in zip(f"{n:03d}", (7, 6, 5), strict=True)) for n in range(1000)
        ]
        self._low = [
            sum(int(d) * w for d, w in zip(f"{n:03d}", (4, 3, 2), strict=True)) for n in range(1000)
        ]
        self._prefix_sums: dict[str, int] = {}

    def make(self, prefix: str, year: int, n: int) -> str:
        """The VIN of the ``n``-th vehicle (unique per ``n`` below 32 million)."""
        total = self._prefix_sums.get(prefix)
        if total is None:
            total = self._prefix_sums[prefix] = sum(
                _VALUES[c] * w for c, w in zip(prefix, _WEIGHTS, strict=False)
            )
        year_code = YEAR_CODES[(year - 2010) % 30]
        plant = PLANTS[(n // 1_000_000) % len(PLANTS)]
        serial = (n * 7919 + 104_729) % 1_000_000  # a bijection: serials look unordered
        total += _VALUES[year_code] * 9 + _VALUES[plant] * 8
        total += self._high[serial // 1000] + self._low[serial % 1000]
        check = "X" if total % 11 == 10 else str(total % 11)
        return f"{prefix}{check}{year_code}{plant}{serial:06d}"
