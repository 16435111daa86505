// The services of the Kitex full-link gray release example.
namespace go shop

struct StockRequest {
    1: string sku
}

struct StockResponse {
    1: i32 available
}

struct ReserveRequest {
    1: string sku
    2: i32 count
}

struct ReserveResponse {
    1: bool ok
}

service Inventory {
    StockResponse Stock(1: StockRequest req)
    ReserveResponse Reserve(1: ReserveRequest req)
}

struct AddRequest {
    1: string user
    2: string sku
}

struct AddResponse {
    1: i32 items
}

service Cart {
    AddResponse Add(1: AddRequest req)
}
